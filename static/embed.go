// Package static embeds the bundled browser code (static/dist, built by esbuild from
// static/src and committed) so that the binary serves it without npm.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// FS is the bundle, rooted at dist/.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time; this cannot fail
	}
	return sub
}

// Versions maps each bundled file name to a short content hash, for cache-busting URLs.
func Versions() map[string]string {
	out := map[string]string{}
	entries, _ := fs.ReadDir(dist, "dist")
	for _, e := range entries {
		b, err := dist.ReadFile("dist/" + e.Name())
		if err != nil {
			continue
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return out
}
