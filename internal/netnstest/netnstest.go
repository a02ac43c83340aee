// Package netnstest makes a hidden host for tests: a network namespace of its
// own, joined to the test's namespace only by a veth pair on a private /30
// (10.213.X.Y), so a process inside it can dial out to the test's address on
// that pair while nothing outside can reach the namespace's own loopback.
// Everything is removed at cleanup (deleting the namespace deletes the pair).
//
// It needs root and iproute2's ip. Without them the test is skipped, or fails
// when CI=true, so CI cannot silently skip.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace with one veth pair to the test's namespace.
type NS struct {
	Name   string // for ip netns exec
	HostIP string // the test's end of the pair, e.g. 10.213.7.1
	NSIP   string // the namespace's end, e.g. 10.213.7.2
}

func require(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("netnstest: %s", why)
	}
	t.Skip("netnstest: " + why)
}

// New creates the namespace, the pair, addresses and routes (the namespace's
// default route points at HostIP), and brings up the namespace's loopback.
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		require(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		require(t, "ip not found; install iproute2")
	}
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	ns := &NS{Name: "sgt" + suffix}
	// A /30 in 10.213.0.0/16 that no interface of this machine uses yet.
	for range 20 {
		rand.Read(b[:2])
		third, fourth := int(b[0]), int(b[1])&^3
		host := fmt.Sprintf("10.213.%d.%d", third, fourth+1)
		if !inUse(host) {
			ns.HostIP, ns.NSIP = host, fmt.Sprintf("10.213.%d.%d", third, fourth+2)
			break
		}
	}
	if ns.HostIP == "" {
		t.Fatal("netnstest: no free /30 in 10.213.0.0/16")
	}
	hostIf, nsIf := "sgh"+suffix, "sgn"+suffix
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("netnstest: ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		require(t, fmt.Sprintf("ip netns add: %v: %s", err, out))
	}
	t.Cleanup(func() {
		// Deleting the namespace deletes its end of the pair, and with it ours.
		exec.Command("ip", "netns", "delete", ns.Name).Run()
		exec.Command("ip", "link", "delete", hostIf).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("link", "set", nsIf, "netns", ns.Name)
	run("addr", "add", ns.HostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", ns.Name, "addr", "add", ns.NSIP+"/30", "dev", nsIf)
	run("-n", ns.Name, "link", "set", nsIf, "up")
	run("-n", ns.Name, "link", "set", "lo", "up")
	run("-n", ns.Name, "route", "add", "default", "via", ns.HostIP)
	return ns
}

func inUse(ip string) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if _, sub, _ := net.ParseCIDR(ip + "/30"); sub.Contains(n.IP) {
				return true
			}
		}
	}
	return false
}

// Command runs name inside the namespace (ip netns exec; the process keeps
// the PID of cmd.Process, as ip execs without forking).
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Dial connects to addr from inside the namespace (with setns on a locked
// thread), for readiness checks of servers listening only there.
func Dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	if ns == "" {
		return net.DialTimeout("tcp", addr, timeout)
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	// The socket belongs to the namespace it was created in, whatever thread
	// polls it later.
	c, derr := net.DialTimeout("tcp", addr, timeout)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	} // else: the thread stays locked and dies with this goroutine's lock
	return c, derr
}
