// Command shellgate-bench measures shellgate against raw OpenSSH on this
// machine, in one run, and prints ratios.
//
// It builds the benchmarks of package bench into a test binary, runs each
// group several times (-runs), parses the figures the benchmarks report,
// and prints medians with min and max, the ratios to OpenSSH and the
// issue's targets as a table; the same goes to a JSON file (-out).
//
// Why Go benchmarks under a command: the benchmarks start a real sshd with
// internal/testsshd, which needs a testing.TB, and they stay runnable alone
// (go test -bench . ./bench). The command adds what go test lacks: medians
// across runs, per-run ratios, targets, the machine, JSON.
//
// shellgate itself (cmd/shellgate) is built once here and started by each
// benchmark process in a child of its own, with a fresh data dir.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shellgate/shellgate/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shellgate-bench:", err)
		os.Exit(1)
	}
}

// group is one benchmark function, run once per run in a process of its own.
type group struct {
	name  string // for -only
	bench string // benchmark function
}

type config struct {
	runs, floodRuns int
	sessionsRuns    int
	only            string
	out             string
	timeout         time.Duration
	pass            []string // -sg.* flags for the test binary
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("shellgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.IntVar(&c.runs, "runs", 3, "runs per figure (median, min, max)")
	fs.IntVar(&c.floodRuns, "flood-runs", 1, "runs of the flood (each lasts -flood-for)")
	fs.IntVar(&c.sessionsRuns, "sessions-runs", 1, "runs of the sessions group (memory varies by a few % between runs; each takes minutes on 2 cores)")
	fs.StringVar(&c.only, "only", "", "comma-separated groups: throughput,echo,files,sessions,flood (default all)")
	fs.StringVar(&c.out, "out", "bench-results/latest.json", "JSON results file (\"\" for none)")
	fs.DurationVar(&c.timeout, "timeout", 20*time.Minute, "give up after this long")
	// Forwarded to the benchmarks (package bench's -sg.* flags).
	throughput := fs.Int("throughput-mib", 128, "terminal output per throughput run, MiB")
	echo := fs.Int("echo", 1000, "one-byte round trips per echo run")
	file := fs.Int("file-mib", 1024, "file size for download and upload, MiB")
	idle := fs.String("idle", "100,1000", "idle session counts at which shellgate's RSS is read")
	typing := fs.String("typing", "10,100,500", "concurrent typing session counts")
	typingFor := fs.Duration("typing-for", 5*time.Second, "typing time per concurrency level")
	keys := fs.Int("keys-per-sec", 10, "keystrokes per second per typing session")
	floodFor := fs.Duration("flood-for", 60*time.Second, "flood duration")
	floodAck := fs.Int("flood-ack-kib", 256, "the slow client's ack rate, KiB/s")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.runs < 1 || c.floodRuns < 1 || c.sessionsRuns < 1 {
		return c, errors.New("-runs, -flood-runs and -sessions-runs must be at least 1")
	}
	c.pass = []string{
		"-sg.throughput-mib=" + strconv.Itoa(*throughput),
		"-sg.echo=" + strconv.Itoa(*echo),
		"-sg.file-mib=" + strconv.Itoa(*file),
		"-sg.idle=" + *idle,
		"-sg.typing=" + *typing,
		"-sg.typing-for=" + typingFor.String(),
		"-sg.keys-per-sec=" + strconv.Itoa(*keys),
		"-sg.flood-for=" + floodFor.String(),
		"-sg.flood-ack-kib=" + strconv.Itoa(*floodAck),
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	started := time.Now()
	loadBefore := loadAvg()

	groups := []group{
		{"throughput", "BenchmarkThroughput"},
		{"echo", "BenchmarkEcho"},
		{"files", "BenchmarkFiles"},
		{"sessions", "BenchmarkSessions"},
		{"flood", "BenchmarkFlood"},
	}
	if cfg.only != "" {
		want := strings.Split(cfg.only, ",")
		groups = slices.DeleteFunc(groups, func(g group) bool { return !slices.Contains(want, g.name) })
		if len(groups) == 0 {
			return fmt.Errorf("-only %q names no group", cfg.only)
		}
	}

	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "shellgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	testBin := filepath.Join(tmp, "bench.test")
	fmt.Fprintln(stderr, "building the benchmarks…")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", testBin, "./bench")
	build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go test -c ./bench: %w", err)
	}
	fmt.Fprintln(stderr, "building shellgate…")
	build = exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, "shellgate"), "./cmd/shellgate")
	build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/shellgate: %w", err)
	}

	// Each run is a fresh test process per group (a new sshd, a new
	// shellgate process), and runs are passes over all groups, so a slow moment
	// of the machine lands in one run of everything rather than in every
	// run of one figure. (go test -count would repeat each sub-benchmark
	// back to back in one process, reusing its state.)
	res := newResults()
	for i := range cfg.runs {
		run := res.newRun()
		for _, g := range groups {
			if (g.name == "flood" && i >= cfg.floodRuns) || (g.name == "sessions" && i >= cfg.sessionsRuns) {
				continue
			}
			fmt.Fprintf(stderr, "\n== run %d/%d: %s\n", i+1, cfg.runs, g.name)
			bargs := append([]string{
				"-test.run=^$", "-test.bench=^" + g.bench + "$", "-test.benchtime=1x",
				"-test.count=1", "-test.v", "-test.timeout=" + cfg.timeout.String(),
				"-sg.shellgate-bin=" + filepath.Join(tmp, "shellgate"),
			}, cfg.pass...)
			cmd := exec.CommandContext(ctx, testBin, bargs...)
			cmd.Dir = filepath.Join(root, "bench")
			cmd.Stderr = stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			if err := cmd.Start(); err != nil {
				return err
			}
			res.parse(run, io.TeeReader(out, stderr))
			if err := cmd.Wait(); err != nil {
				res.Failures = append(res.Failures, fmt.Sprintf("run %d %s: %v", i+1, g.bench, err))
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
	}

	report := buildReport(cfg, res, started)
	report.Machine = machine(ctx)
	// The machine may be shared: the load says how much of it we had.
	report.Machine["load"] = "before " + loadBefore + ", after " + loadAvg()
	printTable(stdout, report)
	if cfg.out != "" {
		path := cfg.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		data, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nJSON: %s\n", path)
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d benchmark group(s) failed: %s", len(res.Failures), strings.Join(res.Failures, "; "))
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run shellgate-bench inside the shellgate module")
	}
	return filepath.Dir(gomod), nil
}

// results holds every reported value, run by run.
type results struct {
	Runs     []map[string]map[string]float64 `json:"runs"` // run → benchmark → unit → value
	Skipped  map[string]string               `json:"skipped"`
	Failures []string                        `json:"failures"`
}

func newResults() *results { return &results{Skipped: map[string]string{}} }

func (r *results) newRun() map[string]map[string]float64 {
	run := map[string]map[string]float64{}
	r.Runs = append(r.Runs, run)
	return run
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.+)$`)
	logLine   = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)
	skipLine  = regexp.MustCompile(`^\s*--- SKIP: (Benchmark\S+)`)
	failLine  = regexp.MustCompile(`^\s*--- FAIL: (Benchmark\S+)`)
)

// parse reads go test -bench -v output into run.
func (r *results) parse(run map[string]map[string]float64, out io.Reader) {
	sc := bufio.NewScanner(out)
	lastLog := ""
	for sc.Scan() {
		line := sc.Text()
		if m := logLine.FindStringSubmatch(line); m != nil {
			lastLog = m[1]
			continue
		}
		if m := skipLine.FindStringSubmatch(line); m != nil {
			r.Skipped[stripProcs(m[1])] = lastLog
			continue
		}
		if m := failLine.FindStringSubmatch(line); m != nil {
			r.Failures = append(r.Failures, m[1]+": "+lastLog)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := stripProcs(m[1])
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || f[i+1] == "ns/op" {
				continue
			}
			if run[name] == nil {
				run[name] = map[string]float64{}
			}
			run[name][f[i+1]] = v
		}
	}
}

// stripProcs removes the -GOMAXPROCS suffix of a benchmark name.
func stripProcs(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// get lists a figure's values over the runs that have it.
func (r *results) get(name, unit string) []float64 {
	var out []float64
	for _, run := range r.Runs {
		if v, ok := run[name][unit]; ok {
			out = append(out, v)
		}
	}
	return out
}

// pairwise combines two figures run by run (both measured in the same run,
// on the same sshd, one after the other), over the runs that have both.
func (r *results) pairwise(nameA, unitA, nameB, unitB string, op func(a, b float64) float64) []float64 {
	var out []float64
	for _, run := range r.Runs {
		a, okA := run[nameA][unitA]
		b, okB := run[nameB][unitB]
		if okA && okB {
			out = append(out, op(a, b))
		}
	}
	return out
}

// Figure is one line of the report.
type Figure struct {
	Section string    `json:"section"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Median  *float64  `json:"median,omitempty"`
	Min     *float64  `json:"min,omitempty"`
	Max     *float64  `json:"max,omitempty"`
	Runs    []float64 `json:"runs,omitempty"`
	Target  string    `json:"target,omitempty"`
	Met     *bool     `json:"met,omitempty"`
	Note    string    `json:"note,omitempty"`
}

// Report is the JSON file.
type Report struct {
	Started  time.Time         `json:"started"`
	Duration string            `json:"duration"`
	Machine  map[string]string `json:"machine"`
	Settings []string          `json:"settings"`
	Figures  []Figure          `json:"figures"`
	Raw      *results          `json:"raw"`
}

func summarize(section, name, unit string, runs []float64) Figure {
	f := Figure{Section: section, Name: name, Unit: unit, Runs: runs}
	if len(runs) == 0 {
		f.Note = "no result"
		return f
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	f.Median, f.Min, f.Max = &med, &s[0], &s[len(s)-1]
	return f
}

func ratio(a, b float64) float64 { return a / b }
func diff(a, b float64) float64  { return a - b }

func withTarget(f Figure, target string, ok func(float64) bool) Figure {
	f.Target = target
	if f.Median != nil {
		met := ok(*f.Median)
		f.Met = &met
	}
	return f
}

func buildReport(cfg config, r *results, started time.Time) Report {
	rep := Report{Started: started, Duration: time.Since(started).Round(time.Second).String(),
		Settings: append([]string{fmt.Sprintf("-runs=%d", cfg.runs), fmt.Sprintf("-flood-runs=%d", cfg.floodRuns),
			fmt.Sprintf("-sessions-runs=%d", cfg.sessionsRuns)}, cfg.pass...), Raw: r}
	add := func(f Figure) { rep.Figures = append(rep.Figures, f) }
	const sg, bridgeIn = bench.LabelShellgate, bench.LabelInProcess

	// Throughput.
	sec := "Terminal throughput (PTY, base64 of random bytes)"
	for _, p := range []struct{ bench, label string }{
		{"direct", "(a) direct, x/crypto/ssh"}, {"openssh", "(b) OpenSSH client"}, {"shellgate", "(c) " + sg},
	} {
		add(summarize(sec, p.label, "MB/s", r.get("BenchmarkThroughput/"+p.bench, "MB/s")))
	}
	add(summarize(sec, "ratio b/a", "×", r.pairwise("BenchmarkThroughput/openssh", "MB/s", "BenchmarkThroughput/direct", "MB/s", ratio)))
	add(withTarget(summarize(sec, "ratio c/a", "×", r.pairwise("BenchmarkThroughput/shellgate", "MB/s", "BenchmarkThroughput/direct", "MB/s", ratio)),
		"≥ 0.85", func(v float64) bool { return v >= 0.85 }))

	// Echo.
	sec = "Keystroke echo (one byte through stty raw -echo; cat)"
	for _, p := range []struct{ bench, label string }{
		{"direct", "direct, x/crypto/ssh"}, {"openssh", "OpenSSH client"}, {"shellgate", sg}, {"bridge-inproc", bridgeIn},
	} {
		for _, u := range []string{"p50-us", "p99-us"} {
			add(summarize(sec, p.label+" "+strings.TrimSuffix(u, "-us"), "µs", r.get("BenchmarkEcho/"+p.bench, u)))
		}
	}
	add(summarize(sec, "added by the bridge alone, p99", "µs",
		r.pairwise("BenchmarkEcho/bridge-inproc", "p99-us", "BenchmarkEcho/direct", "p99-us", diff)))
	add(summarize(sec, "added by shellgate, p50", "µs",
		r.pairwise("BenchmarkEcho/shellgate", "p50-us", "BenchmarkEcho/direct", "p50-us", diff)))
	added := withTarget(summarize(sec, "added by shellgate, p99", "µs",
		r.pairwise("BenchmarkEcho/shellgate", "p99-us", "BenchmarkEcho/direct", "p99-us", diff)),
		"< 250 µs", func(v float64) bool { return v < 250 })
	if added.Min != nil && *added.Min < 0 {
		// shellgate cannot be faster than the library it is built on: a
		// negative difference means the machine's noise exceeds the effect.
		added.Met, added.Note = nil, "not measurable: noise exceeds the effect (negative differences)"
	}
	add(added)

	// Files.
	sec = "Files (sftp vs shellgate HTTP API, " + bench.Cipher + ")"
	for _, dir := range []string{"download", "upload"} {
		add(summarize(sec, dir+", OpenSSH sftp", "MB/s", r.get("BenchmarkFiles/"+dir+"/openssh", "MB/s")))
		name := "BenchmarkFiles/" + dir + "/shellgate"
		if why, ok := r.Skipped[name]; ok {
			add(Figure{Section: sec, Name: dir + ", shellgate HTTP", Unit: "MB/s", Target: "ratio ≥ 0.8", Note: why})
		} else {
			add(summarize(sec, dir+", shellgate HTTP", "MB/s", r.get(name, "MB/s")))
			add(withTarget(summarize(sec, dir+" ratio", "×", r.pairwise(name, "MB/s", "BenchmarkFiles/"+dir+"/openssh", "MB/s", ratio)),
				"≥ 0.8", func(v float64) bool { return v >= 0.8 }))
		}
	}

	// Memory.
	sec = "Memory: VmRSS of the shellgate process"
	names := sortedNames(r, "BenchmarkSessions/idle=")
	for _, name := range names {
		n := strings.TrimPrefix(name, "BenchmarkSessions/idle=")
		add(summarize(sec, n+" idle sessions", "KiB", r.get(name, "RSS-KiB")))
	}
	for _, name := range names {
		n := strings.TrimPrefix(name, "BenchmarkSessions/idle=")
		if v := r.get(name, "KiB/session"); v != nil {
			add(withTarget(summarize(sec, "per session, at "+n, "KiB", v), "< 150 KiB", func(v float64) bool { return v < 150 }))
		}
	}
	// Between two levels: what one more session costs, whatever the
	// baseline holds (free heap the first sessions reuse, runtime growth).
	for i := 1; i < len(names); i++ {
		lo, hi := names[i-1], names[i]
		nlo, _ := strconv.Atoi(strings.TrimPrefix(lo, "BenchmarkSessions/idle="))
		nhi, _ := strconv.Atoi(strings.TrimPrefix(hi, "BenchmarkSessions/idle="))
		if nlo == 0 || nhi <= nlo {
			continue
		}
		add(summarize(sec, fmt.Sprintf("per session, from %d to %d", nlo, nhi), "KiB",
			r.pairwise(hi, "RSS-KiB", lo, "RSS-KiB", func(a, b float64) float64 { return (a - b) / float64(nhi-nlo) })))
	}
	for _, name := range names {
		n := strings.TrimPrefix(name, "BenchmarkSessions/idle=")
		if v := r.get(name, "live-MB"); v != nil {
			add(summarize(sec, "Go heap live after GC, at "+n+" (gctrace)", "MB", v))
		}
	}
	sec = "Flood to a client acking slowly (VmRSS of the shellgate process)"
	add(summarize(sec, "RSS before", "KiB", r.get("BenchmarkFlood", "RSS-before-KiB")))
	add(withTarget(summarize(sec, "RSS growth, peak", "KiB", r.get("BenchmarkFlood", "growth-KiB")),
		"< 2048 KiB", func(v float64) bool { return v < 2048 }))
	add(summarize(sec, "RSS growth, at the end", "KiB", r.get("BenchmarkFlood", "end-growth-KiB")))
	add(summarize(sec, "output delivered", "KiB/s", r.get("BenchmarkFlood", "delivered-KiB/s")))
	add(withTarget(summarize(sec, "Ctrl+C until the remote process is gone", "ms", r.get("BenchmarkFlood", "ctrlc-ms")),
		"< 1000 ms", func(v float64) bool { return v < 1000 }))
	for _, u := range []struct{ unit, label string }{
		{"live-before-MB", "Go heap live before (gctrace)"},
		{"live-peak-MB", "Go heap live after GC, peak"},
		{"heap-peak-MB", "Go heap at GC start, peak"},
		{"goal-peak-MB", "GC goal, peak"},
	} {
		add(summarize(sec, u.label, "MB", r.get("BenchmarkFlood", u.unit)))
	}
	add(summarize(sec, "GC cycles during the flood", "", r.get("BenchmarkFlood", "gc-cycles")))

	// Concurrency.
	sec = "Concurrency: sessions typing at once, echo latency"
	for _, name := range sortedNames(r, "BenchmarkSessions/typing=") {
		n := strings.TrimPrefix(name, "BenchmarkSessions/typing=")
		direct := "BenchmarkSessions/typing-direct=" + n
		add(summarize(sec, n+" sessions, "+sg+", p50", "µs", r.get(name, "p50-us")))
		add(summarize(sec, n+" sessions, "+sg+", p99", "µs", r.get(name, "p99-us")))
		add(summarize(sec, n+" sessions, direct x/crypto/ssh, p50", "µs", r.get(direct, "p50-us")))
		add(summarize(sec, n+" sessions, direct x/crypto/ssh, p99", "µs", r.get(direct, "p99-us")))
	}
	return rep
}

// sortedNames lists benchmark names with prefix, by the number after it.
func sortedNames(r *results, prefix string) []string {
	var names []string
	for _, run := range r.Runs {
		for name := range run {
			if strings.HasPrefix(name, prefix) && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	num := func(s string) int { n, _ := strconv.Atoi(strings.TrimPrefix(s, prefix)); return n }
	slices.SortFunc(names, func(a, b string) int { return num(a) - num(b) })
	return names
}

func printTable(w io.Writer, rep Report) {
	fmt.Fprintf(w, "shellgate-bench, %s, took %s\n", rep.Started.Format(time.RFC3339), rep.Duration)
	for _, k := range []string{"cpu", "nproc", "memory", "kernel", "go", "openssh", "load"} {
		fmt.Fprintf(w, "  %-8s %s\n", k, rep.Machine[k])
	}
	section := ""
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range rep.Figures {
		if f.Section != section {
			section = f.Section
			fmt.Fprintf(t, "\n%s\t\t\t\t\t\t\n", section)
			fmt.Fprintf(t, "  \tmedian\tmin\tmax\tunit\ttarget\t\n")
		}
		verdict := f.Target
		if f.Met != nil {
			if *f.Met {
				verdict += " met"
			} else {
				verdict += " MISSED"
			}
		}
		if f.Median == nil {
			fmt.Fprintf(t, "  %s\t—\t—\t—\t%s\t%s\t%s\n", f.Name, f.Unit, verdict, f.Note)
			continue
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, num(*f.Median), num(*f.Min), num(*f.Max), f.Unit, verdict, f.Note)
	}
	t.Flush()
}

func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// machine describes where the figures come from.
func machine(ctx context.Context) map[string]string {
	m := map[string]string{"nproc": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if out, err := exec.CommandContext(ctx, "lscpu").Output(); err == nil {
		for l := range strings.Lines(string(out)) {
			if v, ok := strings.CutPrefix(l, "Model name:"); ok {
				m["cpu"] = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kib, _ := strconv.ParseFloat(f[0], 64)
					m["memory"] = fmt.Sprintf("%.1f GiB", kib/(1<<20))
				}
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "ssh", "-V").CombinedOutput(); err == nil {
		m["openssh"] = strings.TrimSpace(string(out))
	}
	return m
}

// loadAvg is the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
