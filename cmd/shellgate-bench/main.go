package main

import (
	"fmt"
	"os"

	"github.com/shellgate/shellgate/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bridge-server" {
		if err := bench.BridgeServerMain(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "shellgate-bench bridge-server:", err)
			os.Exit(1)
		}
		return
	}
}
