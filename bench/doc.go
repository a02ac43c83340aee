// Package bench measures shellgate against raw OpenSSH on the same machine,
// in the same run: terminal throughput, keystroke echo latency, file
// transfer, memory per session, a slowly acknowledged flood and many
// sessions typing at once.
//
// The measurements are Go benchmarks (bench_test.go), so they can run alone
// with `go test -bench . ./bench`; each reports its figures with
// b.ReportMetric. cmd/shellgate-bench runs them several times, takes medians,
// computes the ratios to OpenSSH and writes a table and a JSON file.
//
// The non-test files hold what the benchmarks share and what the
// shellgate-bench command needs at run time: a client for the terminal
// WebSocket protocol (Term), the three ways of reaching a PTY shell behind a
// common Shell interface, and the real shellgate endpoint, set up over HTTP
// as an administrator would (Shellgate).
package bench
