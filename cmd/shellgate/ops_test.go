package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func httpGet(t *testing.T, u, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsListenerAndToken: --metrics-listen serves /metrics (and pprof only with
// --pprof) on its own address; --metrics-token-file opens /metrics on the main port to
// the token's bearer only; pprof never answers on the main port.
func TestMetricsListenerAndToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "token")
	token := "0123456789abcdef0123456789abcdef"
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": backupAdminPassword}
	base, stdout, stop := startServeOut(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dir,
		"--metrics-listen", "127.0.0.1:0", "--pprof", "--metrics-token-file", tokenFile}, env)
	defer stop()
	m := regexp.MustCompile(`metrics are served on (http://\S+)/metrics`).FindStringSubmatch(stdout())
	if m == nil {
		t.Fatalf("no metrics address printed:\n%s", stdout())
	}
	metricsBase := m[1]
	if code, body := httpGet(t, metricsBase+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "shellgate_build_info") ||
		!strings.Contains(body, "shellgate_deploy_queue_jobs{state=\"pending\"} 0") {
		t.Fatalf("metrics listener: %d\n%.500s", code, body)
	}
	if code, _ := httpGet(t, metricsBase+"/debug/pprof/cmdline", ""); code != http.StatusOK {
		t.Fatalf("pprof on the metrics listener with --pprof: %d", code)
	}
	if code, _ := httpGet(t, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("main port without the token: %d", code)
	}
	if code, body := httpGet(t, base+"/metrics", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("main port with the token: %d", code)
	}
	// (an unknown path sends a visitor to the sign-in page; it never serves a profile)
	if code, body := httpGet(t, base+"/debug/pprof/cmdline", "Bearer "+token); code == http.StatusOK || strings.Contains(body, "shellgate") && strings.Contains(body, "--pprof") {
		t.Fatalf("pprof on the main port: %d\n%.300s", code, body)
	}
	stop()

	// Without --pprof the metrics listener has no profiles; a token readable by every
	// user is refused at start.
	base, stdout, stop = startServeOut(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dir, "--metrics-listen", "127.0.0.1:0"}, env)
	m = regexp.MustCompile(`metrics are served on (http://\S+)/metrics`).FindStringSubmatch(stdout())
	if code, _ := httpGet(t, m[1]+"/debug/pprof/", ""); code != http.StatusNotFound {
		t.Fatalf("pprof without --pprof: %d", code)
	}
	if code, _ := httpGet(t, base+"/metrics", "Bearer "+token); code != http.StatusNotFound {
		t.Fatalf("main port /metrics without a token file: %d", code)
	}
	stop()
	os.Chmod(tokenFile, 0o644)
	if out, err := runCmd(t, "--listen", "127.0.0.1:0", "--data-dir", dir, "--metrics-token-file", tokenFile); err == nil ||
		!strings.Contains(err.Error(), "readable by every user") {
		t.Fatalf("world-readable token accepted: %v\n%s", err, out)
	}
	if _, err := runCmd(t, "--pprof"); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("--pprof without a metrics listener: %v", err)
	}
}
