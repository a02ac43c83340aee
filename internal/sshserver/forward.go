package sshserver

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// directTCPIPMsg is the payload of a "direct-tcpip" channel open, RFC 4254 section 7.2.
type directTCPIPMsg struct {
	DestHost   string
	DestPort   uint32
	OriginHost string
	OriginPort uint32
}

const forwardDialTimeout = 10 * time.Second

// serveDirectTCPIP forwards a "direct-tcpip" channel to a loopback
// destination, so the server can act as a jump host in tests without becoming
// an open proxy.
func (s *Server) serveDirectTCPIP(nch ssh.NewChannel, log *slog.Logger) {
	var m directTCPIPMsg
	if err := ssh.Unmarshal(nch.ExtraData(), &m); err != nil {
		nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if ip := net.ParseIP(m.DestHost); m.DestHost != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Info("direct-tcpip refused", "dest", m.DestHost)
		nch.Reject(ssh.Prohibited, "only loopback destinations are allowed")
		return
	}
	dest := net.JoinHostPort(m.DestHost, strconv.FormatUint(uint64(m.DestPort), 10))
	conn, err := net.DialTimeout("tcp", dest, forwardDialTimeout)
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		conn.Close()
		return
	}
	log.Debug("direct-tcpip", "dest", dest)

	// The request stream ends when the channel is closed, by either side or
	// with the connection: then the TCP side is closed too, which ends the
	// copy that reads from it.
	s.wg.Go(func() {
		ssh.DiscardRequests(reqs)
		conn.Close()
	})
	up := make(chan struct{})
	s.wg.Go(func() {
		defer close(up)
		io.Copy(conn, ch)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite() // half-close: the client sent EOF
		}
	})
	io.Copy(ch, conn)
	ch.CloseWrite()
	<-up
	ch.Close()
	conn.Close()
}
