package terminal

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeControl(t *testing.T) {
	long := strings.Repeat("x", MaxFieldLen+1)
	tests := []struct {
		in   string
		want Message // nil: must fail with ErrProtocol
	}{
		{`{"type":"open","server":"web-1","cols":80,"rows":24,"ticket":"t1"}`, &OpenMessage{Server: "web-1", Cols: 80, Rows: 24, Ticket: "t1"}},
		{`{"cols":80,"rows":24,"ticket":"t1","server":"s","type":"open"}`, &OpenMessage{Server: "s", Cols: 80, Rows: 24, Ticket: "t1"}},
		{`{"type":"resume","session":"s1","token":"k","offset":0}`, &ResumeMessage{Session: "s1", Token: "k"}},
		{`{"type":"resume","session":"s1","token":"k","offset":123456789012}`, &ResumeMessage{Session: "s1", Token: "k", Offset: 123456789012}},
		{`{"type":"resize","cols":1000,"rows":1}`, &ResizeMessage{Cols: 1000, Rows: 1}},
		{`{"type":"ack","offset":42}`, &AckMessage{Offset: 42}},
		{`{"type":"answer","answers":["a","",""]}`, &AnswerMessage{Answers: []string{"a", "", ""}}},
		{`{"type":"answer","answers":[]}`, &AnswerMessage{Answers: []string{}}},
		{`{"type":"hostkey","accept":true}`, &HostKeyAnswer{Accept: true}},
		{`{"type":"ping"}`, &PingMessage{}},

		{``, nil},
		{`null`, nil},
		{`[]`, nil},
		{`"open"`, nil},
		{`{}`, nil},
		{`{"type":1}`, nil},
		{`{"type":"status","state":"connected"}`, nil}, // server-to-client type
		{`{"type":"Open","server":"s","cols":80,"rows":24,"ticket":"t"}`, nil},
		{`{"type":"ping","x":1}`, nil},
		{`{"type":"resize","Cols":80,"rows":24}`, nil}, // names are case-sensitive
		{`{"type":"resize","cols":0,"rows":24}`, nil},
		{`{"type":"resize","cols":80,"rows":1001}`, nil},
		{`{"type":"resize","cols":-1,"rows":24}`, nil},
		{`{"type":"resize","cols":80.5,"rows":24}`, nil},
		{`{"type":"resize","cols":"80","rows":24}`, nil},
		{`{"type":"ack","offset":-1}`, nil},
		{`{"type":"ack","offset":1e30}`, nil},
		{`{"type":"open","server":"","cols":80,"rows":24,"ticket":"t"}`, nil},
		{`{"type":"open","server":"s","cols":80,"rows":24}`, nil},
		{`{"type":"open","server":"s","cols":80,"rows":24,"ticket":"` + long + `"}`, nil},
		{`{"type":"resume","session":"s","token":"k","offset":-5}`, nil},
		{`{"type":"resume","session":"s","offset":0}`, nil},
		{`{"type":"answer","answers":["` + long + `"]}`, nil},
		{`{"type":"answer","answers":[` + strings.Repeat(`"a",`, MaxAnswers) + `"a"]}`, nil},
		{`{"type":"answer","answers":[1]}`, nil},
		{`{"type":"ping"} {"type":"ping"}`, nil},
		{`{"type":"ping"}x`, nil},
	}
	for _, tt := range tests {
		got, err := DecodeControl([]byte(tt.in))
		if tt.want == nil {
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("DecodeControl(%s) = %#v, %v; want ErrProtocol", tt.in, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("DecodeControl(%s) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestEncodeControl(t *testing.T) {
	three := 3
	tests := []struct {
		m    Message
		want string
	}{
		{PongMessage{}, `{"type":"pong"}`},
		{StatusMessage{State: StateConnecting}, `{"type":"status","state":"connecting"}`},
		{StatusMessage{State: StateClosed, Message: "Connection to web-1 closed.", ExitStatus: &three},
			`{"type":"status","state":"closed","message":"Connection to web-1 closed.","exitStatus":3}`},
		{HostKeyMessage{Fingerprint: "SHA256:x", KeyType: "ssh-ed25519"}, `{"type":"hostkey","fingerprint":"SHA256:x","keyType":"ssh-ed25519","changed":false}`},
		{SessionMessage{ID: "i", ResumeToken: "r", Window: 1024, InputReceived: 5, InputWritten: 3, InputWindow: 262144}, `{"type":"session","id":"i","resumeToken":"r","window":1024,"inputReceived":5,"inputWritten":3,"inputWindow":262144}`},
		{InputAckMessage{Offset: 4096}, `{"type":"inputack","offset":4096}`},
		{ErrorMessage{Code: 4001, Message: "no"}, `{"type":"error","code":4001,"message":"no"}`},
		{PromptMessage{Name: "n", Questions: []Question{{Text: "Password: "}}},
			`{"type":"prompt","name":"n","instruction":"","questions":[{"text":"Password: ","echo":false}]}`},
		{ResizeMessage{Cols: 80, Rows: 24}, `{"type":"resize","cols":80,"rows":24}`},
	}
	for _, tt := range tests {
		got, err := EncodeControl(tt.m)
		if err != nil || string(got) != tt.want {
			t.Errorf("EncodeControl(%#v) = %s, %v; want %s", tt.m, got, err, tt.want)
		}
		decode := DecodeServerControl
		if _, ok := clientMessages[tt.m.MessageType()]; ok && tt.m.MessageType() != TypeHostKey {
			decode = DecodeControl
		}
		back, err := decode(got)
		if err != nil {
			t.Errorf("decode(%s): %v", got, err)
			continue
		}
		if v := reflect.ValueOf(back).Elem().Interface(); !reflect.DeepEqual(v, tt.m) {
			t.Errorf("round trip %s = %#v", got, v)
		}
	}
}

func FuzzDecodeControl(f *testing.F) {
	for _, s := range []string{
		`{"type":"open","server":"web-1","cols":80,"rows":24,"ticket":"t1"}`,
		`{"type":"resume","session":"s1","token":"k","offset":7}`,
		`{"type":"resize","cols":80,"rows":24}`,
		`{"type":"ack","offset":42}`,
		`{"type":"answer","answers":["a","b"]}`,
		`{"type":"hostkey","accept":false}`,
		`{"type":"ping"}`,
		`{"type":"ack","offset":-1}`,
		`{"type":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeControl(data)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error not ErrProtocol: %v", err)
			}
			return
		}
		// Whatever decodes must be within limits and survive a round trip.
		if err := validate(m); err != nil {
			t.Fatalf("decoded invalid message %#v: %v", m, err)
		}
		enc, err := EncodeControl(reflect.ValueOf(m).Elem().Interface().(Message))
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeControl(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %s: %#v, %v; want %#v", enc, m2, err, m)
		}
	})
}

var update = flag.Bool("update", false, "rewrite golden files such as protocol.json")

// protocolSpec is what the browser mirrors: every constant of the protocol.
func protocolSpec() map[string]any {
	return map[string]any{
		"_comment": "Generated from terminal/protocol.go by `go test ./terminal -run TestProtocolJSON -update`. Do not edit.",
		"types": map[string]map[string]string{
			"client": {"open": TypeOpen, "resume": TypeResume, "resize": TypeResize, "ack": TypeAck,
				"answer": TypeAnswer, "hostkey": TypeHostKey, "ping": TypePing},
			"server": {"status": TypeStatus, "prompt": TypePrompt, "hostkey": TypeHostKey,
				"session": TypeSession, "pong": TypePong, "error": TypeError, "inputack": TypeInputAck},
		},
		"states": map[string]string{"connecting": StateConnecting, "prompt": StatePrompt,
			"connected": StateConnected, "closed": StateClosed},
		"closeCodes": map[string]int{
			"normal": CloseNormal, "goingAway": CloseGoingAway, "policy": ClosePolicy,
			"tooBig": CloseTooBig, "internal": CloseInternal, "authFailed": CloseAuthFailed,
			"hostKeyChanged": CloseHostKeyChanged, "hostKeyRejected": CloseHostKeyRejected,
			"ticketInvalid": CloseTicketInvalid, "sessionNotFound": CloseSessionNotFound,
			"tooManySessions": CloseTooManySessions, "terminated": CloseTerminated,
			"connectFailed": CloseConnectFailed, "connectionLost": CloseConnectionLost,
			"takenOver": CloseTakenOver, "revoked": CloseRevoked,
		},
		"limits": map[string]int{"maxCols": MaxCols, "maxRows": MaxRows, "maxAnswers": MaxAnswers,
			"maxFieldLen": MaxFieldLen, "readLimit": ReadLimit, "defaultWindow": DefaultWindow,
			"inputWindow": InputWindow, "inputAckStep": InputAckStep, "pasteChunk": PasteChunk,
			"reconnectInput": ReconnectInput, "controlRate": ControlRate, "controlBurst": ControlBurst},
	}
}

// TestProtocolJSON keeps protocol.json, which the browser code imports, equal
// to the Go constants.
func TestProtocolJSON(t *testing.T) {
	want, err := json.MarshalIndent(protocolSpec(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile("protocol.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("protocol.json")
	if err != nil {
		t.Fatalf("%v (run go test ./terminal -run TestProtocolJSON -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("protocol.json is out of date; run go test ./terminal -run TestProtocolJSON -update")
	}
}
