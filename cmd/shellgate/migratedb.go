package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/shellgate/shellgate/store"
)

// migrateDBCommand copies an install's SQLite database into a new PostgreSQL database,
// the step from one process to several replicas.
func migrateDBCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate-db", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "source: sqlite:PATH (the data dir's shellgate.db; stop shellgate first)")
	to := fs.String("to", getenv("SHELLGATE_DATABASE_URL"), "target: postgres://user@host/db, a new empty database (SHELLGATE_DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate-db: unexpected argument %q", fs.Arg(0))
	}
	if !strings.HasPrefix(*from, "sqlite:") {
		return errors.New("migrate-db: --from sqlite:PATH is required")
	}
	if !strings.HasPrefix(*to, "postgres://") && !strings.HasPrefix(*to, "postgresql://") {
		return errors.New("migrate-db: --to postgres://… is required")
	}
	src, err := store.Open(ctx, *from)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := store.Open(ctx, *to)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	report, err := store.Copy(ctx, src, dst)
	if report != nil {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "table\tsource rows\ttarget rows\t")
		for _, t := range report.Tables {
			fmt.Fprintf(tw, "%s\t%d\t%d\t\n", t.Table, t.Source, t.Target)
		}
		tw.Flush()
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "copied; every count matches.")
	fmt.Fprintln(stdout, "Secrets stay sealed under the same master key: give every replica a copy of this install's master.key (data dir, mode 0600).")
	return nil
}
