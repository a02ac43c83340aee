package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/shellgate/shellgate/internal/secrets"
	"github.com/shellgate/shellgate/internal/sshkey"
	"github.com/shellgate/shellgate/store"
	"github.com/shellgate/shellgate/views/pages"
)

// Sealer encrypts secrets at rest (AES-256-GCM under the master key ring in production:
// *secrets.Keyring). Open must fail with an error wrapping secrets.ErrTampered when the
// ciphertext or its additional data was altered.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(ciphertext, additionalData []byte) ([]byte, error)
}

// downloadWindow is how long after generation the private key may be downloaded (once).
const downloadWindow = 10 * time.Minute

// maxKeyForm bounds the body of the key forms: a key file is a few KB.
const maxKeyForm = 256 << 10

// maxKeyFile bounds one uploaded key file; sshkey refuses anything larger anyway.
const maxKeyFile = 64 << 10

// keyAD is the additional data that binds a sealed private key to its row: the owner,
// the name (unique per owner) and the fingerprint of the public half. A ciphertext
// copied into another row — another user's, or a key with another public half — does
// not open there. Everything in it is known before the INSERT.
func keyAD(userID int64, name, fingerprint string) []byte {
	return fmt.Appendf(nil, "shellgate/ssh_key/v1:%d:%s:%s", userID, name, fingerprint)
}

// errSealedKeyTampered is what a user sees when a stored private key fails its
// integrity check. The key is not used.
const errSealedKeyTampered = "The stored private key failed its integrity check: it was altered in the database or " +
	"sealed under another master key, so shellgate refused to use it. Delete this key and add it again; " +
	"tell your administrator, who should check who can write to the database."

// keysModel lists the user's keys; the forms are filled by the caller.
func (s *Server) keysModel(c echo.Context, tab string) (pages.KeysModel, error) {
	u := currentUser(c)
	keys, err := s.store.ListKeys(c.Request().Context(), u.ID)
	if err != nil {
		return pages.KeysModel{}, err
	}
	switch tab {
	case pages.KeysTabPublic, pages.KeysTabUpload, pages.KeysTabGenerate:
	default:
		tab = pages.KeysTabPublic
	}
	m := pages.KeysModel{Tab: tab}
	for _, k := range keys {
		stacks, err := s.store.KeyStacks(c.Request().Context(), k.ID)
		if err != nil {
			return pages.KeysModel{}, err
		}
		row := pages.KeyRow{
			ID: k.ID, Name: k.Name, Comment: k.Comment, Type: k.Type, Bits: k.Bits,
			Fingerprint: k.Fingerprint, HasPrivate: k.HasPrivate, Protected: k.PrivateProtected,
			Origin: k.PrivateOrigin, CreatedAt: k.CreatedAt,
		}
		for _, st := range stacks {
			row.Stacks = append(row.Stacks, st.Name)
		}
		m.Keys = append(m.Keys, row)
	}
	return m, nil
}

func (s *Server) renderKeys(c echo.Context, status int, m pages.KeysModel) error {
	return render(c, status, pages.Keys(s.page(c, "SSH keys", "keys"), m))
}

// keysPage lists the user's keys with the forms to add one. ?generated=ID shows the
// one-time download of a key just generated, while its window lasts.
func (s *Server) keysPage(c echo.Context) error {
	m, err := s.keysModel(c, c.QueryParam("add"))
	if err != nil {
		return err
	}
	if id, err := strconv.ParseInt(c.QueryParam("generated"), 10, 64); err == nil {
		k, err := s.store.KeyByID(c.Request().Context(), currentUser(c).ID, id)
		switch {
		case err == nil:
			m.Fresh = freshKey(k, s.cfg.Now())
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	return s.renderKeys(c, http.StatusOK, m)
}

// freshKey is the download panel of k, or nil when no download is left.
func freshKey(k *store.Key, now time.Time) *pages.FreshKey {
	if k.PrivateOrigin != store.PrivateGenerated || !k.DownloadUntil.After(now) {
		return nil
	}
	return &pages.FreshKey{ID: k.ID, Name: k.Name, Type: k.Type, Bits: k.Bits, Fingerprint: k.Fingerprint, Until: k.DownloadUntil}
}

// inputMessage is the user-facing message of a refused key input, or "" when err is
// not about the input.
func inputMessage(err error) string {
	var ie *sshkey.InputError
	if errors.As(err, &ie) {
		return ie.Message
	}
	return ""
}

// readFormFile reads an uploaded file of at most maxKeyFile bytes; no file chosen is
// (nil, nil).
func readFormFile(c echo.Context, field string) ([]byte, error) {
	fh, err := c.FormFile(field)
	if errors.Is(err, http.ErrMissingFile) || errors.Is(err, http.ErrNotMultipart) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return readLimited(fh)
}

func readLimited(fh *multipart.FileHeader) ([]byte, error) {
	if fh.Size > maxKeyFile {
		return nil, errFileTooLarge
	}
	f, err := fh.Open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, errFileTooLarge
	}
	return data, nil
}

var errFileTooLarge = errors.New("key file too large")

const fileTooLargeMessage = "This file is too large to be an SSH key."

// checkNewName validates a key name; "" means it is acceptable (uniqueness is left
// to the INSERT, so two concurrent requests cannot both take it).
func checkNewName(name string) string {
	if err := sshkey.ValidName(name); err != nil {
		return inputMessage(err)
	}
	return ""
}

func nameTaken(name string) string {
	return "You already have a key named " + name + ". Choose another name."
}

// duplicateOf returns the message for a key the user has registered already, or "".
func (s *Server) duplicateOf(ctx context.Context, userID int64, fingerprint string) (string, error) {
	k, err := s.store.KeyByFingerprint(ctx, userID, fingerprint)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	return "This key is already registered as " + k.Name + ".", nil
}

// addPublicKey registers a public key pasted into the form or chosen as a .pub file.
func (s *Server) addPublicKey(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	form := pages.PublicKeyForm{Name: strings.TrimSpace(c.FormValue("name"))}
	pasted := c.FormValue("public_key")
	again := func(status int) error {
		m, err := s.keysModel(c, pages.KeysTabPublic)
		if err != nil {
			return err
		}
		m.Public = form
		return s.renderKeys(c, status, m)
	}
	form.Key = truncate(pasted, 16<<10)

	file, err := readFormFile(c, "public_key_file")
	if errors.Is(err, errFileTooLarge) {
		form.KeyError = fileTooLargeMessage
		return again(http.StatusUnprocessableEntity)
	} else if err != nil {
		return err
	}
	input, source := pasted, "paste"
	switch {
	case len(file) > 0 && strings.TrimSpace(pasted) != "":
		form.KeyError = "Paste the key or choose a file, not both."
		return again(http.StatusUnprocessableEntity)
	case len(file) > 0:
		input, source = string(file), "file"
	}
	form.NameError = checkNewName(form.Name)

	pub, err := sshkey.ParsePublic(input)
	if err != nil {
		msg := inputMessage(err)
		if msg == "" {
			return err
		}
		form.KeyError = msg
		if errors.Is(err, sshkey.ErrPrivateKeyPasted) {
			// Never send a private key back to the browser, not even into its own form.
			form.Key, form.KeyWarning = "", true
			s.audit(c, u, "key.add", truncate(form.Name, 64), false, map[string]string{"reason": "private key pasted as public key"})
		}
		return again(http.StatusUnprocessableEntity)
	}
	if form.NameError != "" {
		return again(http.StatusUnprocessableEntity)
	}
	if form.KeyError, err = s.duplicateOf(ctx, u.ID, pub.Fingerprint); err != nil {
		return err
	} else if form.KeyError != "" {
		return again(http.StatusConflict)
	}
	k := &store.Key{
		UserID: u.ID, Name: form.Name, PublicKey: publicKeyText(pub), Comment: pub.Comment,
		Type: pub.Type, Bits: pub.Bits, Fingerprint: pub.Fingerprint, CreatedAt: s.cfg.Now(),
	}
	if err := s.store.CreateKey(ctx, k); errors.Is(err, store.ErrConflict) {
		form.NameError = nameTaken(form.Name)
		return again(http.StatusConflict)
	} else if err != nil {
		return err
	}
	s.audit(c, u, "key.add", k.Name, true, map[string]string{"fingerprint": k.Fingerprint, "type": k.Type, "source": source})
	s.setFlash(c, "ok", "Key "+k.Name+" added: "+k.Fingerprint)
	return c.Redirect(http.StatusSeeOther, "/keys")
}

// publicKeyText is the canonical "type base64" form the table stores (comment apart).
func publicKeyText(p *sshkey.Public) string {
	line := p.AuthorizedLine()
	if p.Comment != "" {
		line = strings.TrimSuffix(line, " "+p.Comment)
	}
	return line
}

// uploadPrivateKey stores an uploaded private key, sealed. A passphrase-protected key
// is checked with the passphrase once and stored still protected; the passphrase is
// not kept.
func (s *Server) uploadPrivateKey(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	form := pages.UploadKeyForm{Name: strings.TrimSpace(c.FormValue("name"))}
	again := func(status int) error {
		m, err := s.keysModel(c, pages.KeysTabUpload)
		if err != nil {
			return err
		}
		m.Upload = form
		return s.renderKeys(c, status, m)
	}
	form.NameError = checkNewName(form.Name)
	file, err := readFormFile(c, "private_key_file")
	if errors.Is(err, errFileTooLarge) {
		form.FileError = fileTooLargeMessage
		return again(http.StatusUnprocessableEntity)
	} else if err != nil {
		return err
	}
	passphrase := []byte(c.FormValue("passphrase"))
	defer clear(passphrase)
	priv, err := sshkey.ParsePrivate(file, passphrase)
	if err != nil {
		msg := inputMessage(err)
		if msg == "" {
			return err
		}
		switch {
		case errors.Is(err, sshkey.ErrPassphraseRequired), errors.Is(err, sshkey.ErrWrongPassphrase):
			// The browser cannot refill a file input: say so.
			form.PassphraseError = msg + " Choose the file again as well: the browser does not keep it."
		default:
			form.FileError = msg
		}
		return again(http.StatusUnprocessableEntity)
	}
	if form.NameError != "" {
		return again(http.StatusUnprocessableEntity)
	}
	if form.FileError, err = s.duplicateOf(ctx, u.ID, priv.Public.Fingerprint); err != nil {
		return err
	} else if form.FileError != "" {
		return again(http.StatusConflict)
	}
	k, err := s.storePrivate(ctx, u, form.Name, priv, store.PrivateUploaded, time.Time{})
	if errors.Is(err, store.ErrConflict) {
		form.NameError = nameTaken(form.Name)
		return again(http.StatusConflict)
	} else if err != nil {
		return err
	}
	s.audit(c, u, "key.add", k.Name, true, map[string]string{
		"fingerprint": k.Fingerprint, "type": k.Type, "source": "private upload",
		"protected": strconv.FormatBool(k.PrivateProtected),
	})
	msg := "Private key " + k.Name + " uploaded and stored encrypted: " + k.Fingerprint
	if k.PrivateProtected {
		msg += ". It stays passphrase-protected."
	}
	s.setFlash(c, "ok", msg)
	return c.Redirect(http.StatusSeeOther, "/keys")
}

// storePrivate seals priv's storage bytes to the new row and inserts it.
func (s *Server) storePrivate(ctx context.Context, u *store.User, name string, priv *sshkey.Private, origin string, downloadUntil time.Time) (*store.Key, error) {
	plain, err := priv.StorageBytes()
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	pub := priv.Public
	sealed, err := s.cfg.Secrets.Seal(plain, keyAD(u.ID, name, pub.Fingerprint))
	if err != nil {
		return nil, fmt.Errorf("seal private key: %w", err)
	}
	k := &store.Key{
		UserID: u.ID, Name: name, PublicKey: publicKeyText(pub), Comment: pub.Comment,
		Type: pub.Type, Bits: pub.Bits, Fingerprint: pub.Fingerprint,
		PrivateSealed: sealed, PrivateProtected: priv.Encrypted, PrivateOrigin: origin,
		DownloadUntil: downloadUntil, CreatedAt: s.cfg.Now(),
	}
	if err := s.store.CreateKey(ctx, k); err != nil {
		return nil, err
	}
	return k, nil
}

// openPrivate unseals the private part of k. A stored key that was altered gives an
// error wrapping secrets.ErrTampered and is never parsed. A passphrase-protected key
// needs its passphrase (sshkey.ErrPassphraseRequired without one).
func (s *Server) openPrivate(k *store.Key, passphrase []byte) (*sshkey.Private, error) {
	if len(k.PrivateSealed) == 0 {
		return nil, fmt.Errorf("key %d has no private part", k.ID)
	}
	plain, err := s.cfg.Secrets.Open(k.PrivateSealed, keyAD(k.UserID, k.Name, k.Fingerprint))
	if err != nil {
		return nil, fmt.Errorf("open sealed key %d: %w", k.ID, err)
	}
	defer clear(plain)
	priv, err := sshkey.ParsePrivate(plain, passphrase)
	if err != nil {
		return nil, fmt.Errorf("parse stored key %d: %w", k.ID, err)
	}
	if priv.Public.Fingerprint != k.Fingerprint {
		// Cannot happen unless the seal's binding is broken; never use such a key.
		return nil, fmt.Errorf("stored key %d: %w: private part does not match the fingerprint", k.ID, secrets.ErrTampered)
	}
	return priv, nil
}

// generateKey creates a key, keeps it sealed and opens its one-time download window.
func (s *Server) generateKey(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	form := pages.GenerateKeyForm{Name: strings.TrimSpace(c.FormValue("name")), Kind: c.FormValue("kind")}
	again := func(status int) error {
		m, err := s.keysModel(c, pages.KeysTabGenerate)
		if err != nil {
			return err
		}
		m.Generate = form
		return s.renderKeys(c, status, m)
	}
	form.NameError = checkNewName(form.Name)
	switch form.Kind {
	case "", sshkey.KindEd25519, sshkey.KindECDSA, sshkey.KindRSA:
	default:
		form.Kind, form.KindError = "", "Choose Ed25519, ECDSA P-256 or RSA 4096."
	}
	if form.NameError != "" || form.KindError != "" {
		return again(http.StatusUnprocessableEntity)
	}
	priv, err := sshkey.Generate(form.Kind)
	if err != nil {
		return err
	}
	// Like ssh-keygen's user@host, so the key says where it came from in authorized_keys.
	priv.Public.Comment = u.Username + "@shellgate"
	k, err := s.storePrivate(ctx, u, form.Name, priv, store.PrivateGenerated, s.cfg.Now().Add(downloadWindow))
	if errors.Is(err, store.ErrConflict) {
		form.NameError = nameTaken(form.Name)
		return again(http.StatusConflict)
	} else if err != nil {
		return err
	}
	s.audit(c, u, "key.generate", k.Name, true, map[string]string{"fingerprint": k.Fingerprint, "type": k.Type})
	return c.Redirect(http.StatusSeeOther, "/keys?generated="+strconv.FormatInt(k.ID, 10))
}

// keyParam parses :id; anything else is 404, like a key of another user.
func keyParam(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, echo.NewHTTPError(http.StatusNotFound)
	}
	return id, nil
}

// downloadKey hands out a generated private key, once: the window is claimed with one
// conditional UPDATE, so of two concurrent requests exactly one gets the file. The file
// is in OpenSSH format, encrypted with the passphrase typed in the form if any.
func (s *Server) downloadKey(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	id, err := keyParam(c)
	if err != nil {
		return err
	}
	passphrase, confirm := []byte(c.FormValue("passphrase")), []byte(c.FormValue("passphrase_confirm"))
	defer clear(passphrase)
	defer clear(confirm)
	if string(passphrase) != string(confirm) {
		// Checked before claiming, so a typo does not cost the one download.
		k, err := s.store.KeyByID(ctx, u.ID, id)
		if errors.Is(err, store.ErrNotFound) {
			return echo.NewHTTPError(http.StatusNotFound)
		} else if err != nil {
			return err
		}
		m, err := s.keysModel(c, "")
		if err != nil {
			return err
		}
		if m.Fresh = freshKey(k, s.cfg.Now()); m.Fresh != nil {
			m.Fresh.Error = "The two passphrases differ. Type them again."
		}
		return s.renderKeys(c, http.StatusUnprocessableEntity, m)
	}

	k, err := s.store.ClaimKeyDownload(ctx, u.ID, id, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		k, err := s.store.KeyByID(ctx, u.ID, id)
		if errors.Is(err, store.ErrNotFound) {
			return echo.NewHTTPError(http.StatusNotFound)
		} else if err != nil {
			return err
		}
		s.audit(c, u, "key.download", k.Name, false, map[string]string{"reason": "no download left"})
		m, err := s.keysModel(c, "")
		if err != nil {
			return err
		}
		m.Error = "The private key of " + k.Name + " cannot be downloaded: it was downloaded already, or the " +
			strconv.Itoa(int(downloadWindow/time.Minute)) + " minutes after its creation have passed. shellgate hands a " +
			"private key out only once. If you lost it, delete the key and generate a new one."
		return s.renderKeys(c, http.StatusGone, m)
	} else if err != nil {
		return err
	}

	priv, err := s.openPrivate(k, nil)
	if err != nil {
		return s.privateKeyUnusable(c, u, "key.download", k, err)
	}
	file, err := sshkey.MarshalOpenSSH(priv, k.Comment, passphrase)
	if err != nil {
		return err
	}
	defer clear(file)
	s.audit(c, u, "key.download", k.Name, true, map[string]string{
		"fingerprint": k.Fingerprint, "encrypted": strconv.FormatBool(len(passphrase) > 0),
	})
	h := c.Response().Header()
	// Names are [A-Za-z0-9_]{1,32}: nothing to escape in the header.
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+k.Name+`"`)
	h.Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, "application/octet-stream", file)
}

// privateKeyUnusable reports a stored private key that cannot be opened: tampering in
// plain words to the user, the details to the log and the audit, the key never used.
func (s *Server) privateKeyUnusable(c echo.Context, u *store.User, kind string, k *store.Key, err error) error {
	if !errors.Is(err, secrets.ErrTampered) && !errors.Is(err, secrets.ErrUnknownKey) {
		return err
	}
	s.log.Error("stored private key refused", "key_id", k.ID, "user", u.Username, "err", err)
	s.audit(c, u, kind, k.Name, false, map[string]string{"reason": "sealed private key failed its integrity check"})
	m, merr := s.keysModel(c, "")
	if merr != nil {
		return merr
	}
	m.Error = errSealedKeyTampered
	return s.renderKeys(c, http.StatusInternalServerError, m)
}

// deleteKey removes one of the user's keys (and shellgate's copy of its private part).
func (s *Server) deleteKey(c echo.Context) error {
	u := currentUser(c)
	ctx := c.Request().Context()
	id, err := keyParam(c)
	if err != nil {
		return err
	}
	k, err := s.store.KeyByID(ctx, u.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound)
	} else if err != nil {
		return err
	}
	clear(k.PrivateSealed)
	// Deleting a key detaches it everywhere: its lines are queued for removal from
	// every server before the key itself goes.
	if err := s.store.DetachKeyEverywhere(ctx, k.ID, s.cfg.Now()); err != nil {
		return err
	}
	if err := s.store.DeleteKey(ctx, u.ID, id); errors.Is(err, store.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound)
	} else if err != nil {
		return err
	}
	s.audit(c, u, "key.delete", k.Name, true, map[string]string{"fingerprint": k.Fingerprint})
	s.setFlash(c, "ok", "Key "+k.Name+" deleted.")
	return c.Redirect(http.StatusSeeOther, "/keys")
}
