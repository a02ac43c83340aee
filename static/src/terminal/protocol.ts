// The terminal WebSocket protocol, mirrored from terminal/protocol.go (docs/protocol.md
// is the prose version). e2e/tests/protocol.spec.ts checks every value here against
// terminal/protocol.json, which a Go test keeps equal to the Go constants.
//
// Binary frames carry raw terminal bytes, both ways, unframed. Text frames carry one
// JSON control message each: an object whose "type" names it.

/** Control message types sent by the browser. */
export const ClientType = {
  open: "open", // start a new terminal: {server, cols, rows, ticket}
  resume: "resume", // reattach to a detached session: {session, token, offset}
  resize: "resize", // the terminal changed size: {cols, rows}
  ack: "ack", // output up to offset has been rendered: {offset}
  answer: "answer", // answers to the last prompt, in order: {answers[]}
  hostkey: "hostkey", // the answer to a host key question: {accept}
  ping: "ping", // application-level liveness probe; answered with pong
} as const;

/** Control message types sent by the server. */
export const ServerType = {
  status: "status", // connection state changed: {state, message, exitStatus}
  prompt: "prompt", // authentication questions: {name, instruction, questions[{text, echo}]}
  hostkey: "hostkey", // a host key question: {fingerprint, keyType, changed}
  session: "session", // the session exists; keep id and token to resume: {id, resumeToken, window}
  pong: "pong", // reply to ping
  error: "error", // why the socket is about to close: {code, message}
  inputack: "inputack", // input up to offset was written to the remote shell: {offset}; returns input credit
} as const;

/** States carried by status messages. */
export const State = {
  connecting: "connecting", // dialing, key exchange, authentication
  prompt: "prompt", // waiting for the person (prompt or host key question)
  connected: "connected", // the shell is running; binary frames flow
  closed: "closed", // the session ended; exitStatus is set when the shell exited
} as const;

/** WebSocket close codes: 1000–1011 keep their RFC 6455 meaning; 4000–4999 are ours. */
export const CloseCode = {
  normal: 1000, // the remote shell exited (exit, logout, Ctrl+D)
  goingAway: 1001, // the server is shutting down
  policy: 1008, // protocol violation (malformed or unexpected message)
  tooBig: 1009, // a message exceeded the read limit
  internal: 1011, // unexpected server error
  authFailed: 4001, // the SSH server refused every authentication method
  hostKeyChanged: 4002, // the server's host key differs from the pinned one; nothing was sent
  hostKeyRejected: 4003, // the person did not accept an unknown host key
  ticketInvalid: 4004, // the open ticket is unknown, used, expired or not for this server
  sessionNotFound: 4005, // resume failed: no such session, wrong token, or offset no longer kept
  tooManySessions: 4006, // the per-user session limit is reached
  terminated: 4007, // an administrator closed the session
  connectFailed: 4008, // the SSH server could not be reached (refused, timeout, not SSH, no common algorithms)
  connectionLost: 4009, // the SSH connection died (keepalive missed, network)
  takenOver: 4010, // another socket resumed this session
  revoked: 4011, // access ended: sign-out, password change, account disabled, removed from the stack, server or key gone, host key re-pinned
} as const;

/** Limits the server enforces. */
export const Limits = {
  maxCols: 1000, // cols must be 1..maxCols
  maxRows: 1000, // rows must be 1..maxRows
  maxAnswers: 32, // at most this many answers per prompt
  maxFieldLen: 1024, // longest string field (ticket, answer, server, token)
  readLimit: 65536, // largest message the server accepts, in bytes
  defaultWindow: 1048576, // unacknowledged output allowed before the server stops reading
  inputWindow: 262144, // input sent but not yet written to the shell (not covered by an inputack)
  inputAckStep: 4096, // the server sends inputack whenever this much more input was written
  pasteChunk: 16384, // a paste goes out in binary frames of at most this many bytes
  reconnectInput: 65536, // keystrokes kept while reconnecting; beyond it the page says input was dropped
  controlRate: 2000, // control messages a second a socket may send (sustained)
  controlBurst: 4000, // ... and in a burst; beyond, the socket closes with 1008
} as const;

export interface Question {
  text: string;
  echo: boolean;
}

export type ServerMessage =
  | { type: "status"; state: string; message?: string; exitStatus?: number }
  | { type: "prompt"; name?: string; instruction?: string; questions: Question[] }
  | { type: "hostkey"; fingerprint: string; keyType: string; changed?: boolean }
  | { type: "session"; id: string; resumeToken: string; window?: number; inputReceived: number; inputWritten: number; inputWindow?: number }
  | { type: "inputack"; offset: number }
  | { type: "pong" }
  | { type: "error"; code: number; message: string };
