// Package views holds shellgate's HTML, as templ components, and the plain view-model
// structs they take. Components never reach for data themselves: handlers fill the
// models. layout/ has the document shell, pages/ one component per page, partials/
// fragments a handler re-renders alone, components/ reusable widgets.
package views

// Viewer is the signed-in person, as the layout shows them.
type Viewer struct {
	Username string
	IsAdmin  bool
}

// Assets are the URLs of the bundled browser code, with cache-busting versions.
type Assets struct {
	CSS   string
	JS    string
	Theme string // tiny synchronous script that applies the saved theme before paint
	// The terminal page's own bundle.
	TermJS  string
	TermCSS string
	// The recording player's bundle (asciinema-player).
	PlayerJS  string
	PlayerCSS string
}

// Flash is a one-line message shown at the top of a page.
type Flash struct {
	Kind    string // "ok" | "error" | "info"
	Message string
}

// Page is what every page's layout needs.
type Page struct {
	Title  string
	Nav    string // which navigation entry is current: "stacks", "keys", "audit", "admin", "account"
	Viewer *Viewer
	CSRF   string // token for forms that change state
	Assets Assets
	// ExtraCSS is one more stylesheet for a page with its own bundle (the terminal).
	ExtraCSS string
	Flash    *Flash
}
