// Package internal holds shellgate's libraries that are not part of its public layout.
package internal
