// TerminalConnection speaks the terminal protocol over one WebSocket at a time and
// survives network drops: the SSH session stays on the server for a grace period, and
// a new socket resumes it from the last byte this page received.

import { ClientType, CloseCode, Limits, ServerType, State, type Question, type ServerMessage } from "./protocol";

export interface ConnectionEvents {
  /** Terminal output; call done() once it is rendered, which acknowledges it. */
  output(data: Uint8Array, done: () => void): void;
  status(state: string, message: string, exitStatus?: number): void;
  prompt(name: string, instruction: string, questions: Question[]): Promise<string[] | null>;
  hostKey(fingerprint: string, keyType: string, changed: boolean): Promise<boolean>;
  /** The socket dropped and a resume is being attempted (attempt counts from 1). */
  reconnecting(attempt: number, delayMs: number): void;
  latency(ms: number): void;
  /** The session is over for good; message says why in plain words. */
  closed(code: number, message: string, exitStatus?: number): void;
  /** Input is waiting to be sent (bytes; 0 once all of it went out). */
  inputWaiting(bytes: number): void;
  /** Input was not sent: typed while reconnecting beyond the bound, or cut by the end of the session. */
  inputLost(bytes: number, why: "overflow" | "ended"): void;
}

export interface OpenParams {
  wsURL: string;
  server: string;
  cols: number;
  rows: number;
  ticket: () => Promise<string>;
}

// Acknowledge rendered output in steps, so the server keeps streaming without an ack
// per frame; an idle terminal acknowledges at once so small outputs never wait.
const ackStep = 64 * 1024;
// How long to keep trying to resume: the server keeps a detached session 60 s.
const resumeBudgetMs = 55_000;

export class TerminalConnection {
  private ws: WebSocket | null = null;
  private sessionID = "";
  private resumeToken = "";
  private received = 0; // bytes of output received since the session began
  private rendered = 0; // bytes xterm.js has rendered
  private acked = 0;
  private pendingWrites = 0;
  private over = false;
  private exitStatus: number | undefined;
  private pingTimer = 0;
  private pingSentAt = 0;
  private dropStarted = 0;
  private attempt = 0;
  private lastError: { code: number; message: string } | null = null;

  // Input flow control (docs/protocol.md, "Input"): at most inputWindow bytes beyond
  // what the server said it wrote to the shell are in flight. What waits for credit,
  // for the session to start or for a reconnect sits in `queue`, in order; what was
  // sent but not yet acknowledged stays in `inflight`, so a resume can send again what
  // the server never received.
  private live = false; // this socket may carry input (session message received)
  private inputSent = 0; // input offset sent (or, after a resume, known received)
  private inputAcked = 0; // input offset the server wrote to the shell
  private inputWindow: number = Limits.inputWindow;
  private inflight: Uint8Array[] = []; // bytes [inputAcked, inputSent), in order
  private queue: Uint8Array[] = [];
  private queued = 0;
  private typedWhileDown = 0; // keystrokes queued while no socket could carry them

  constructor(
    private params: OpenParams,
    private ev: ConnectionEvents,
  ) {}

  async open(): Promise<void> {
    const ticket = await this.params.ticket();
    this.connect({ type: ClientType.open, server: this.params.server, cols: this.params.cols, rows: this.params.rows, ticket });
  }

  /** Sends keystrokes. Typed while reconnecting, they wait (up to reconnectInput bytes). */
  input(data: string | Uint8Array): void {
    if (this.over) return;
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    if (!this.live) {
      if (this.typedWhileDown + bytes.byteLength > Limits.reconnectInput) {
        this.ev.inputLost(bytes.byteLength, "overflow");
        return;
      }
      this.typedWhileDown += bytes.byteLength;
    }
    this.enqueue(bytes);
  }

  /**
   * Sends pasted text of any size, in frames of at most pasteChunk bytes, as input
   * credit allows: output keeps rendering and being acknowledged meanwhile. The text
   * must already be sanitised (see main.ts).
   */
  paste(text: string): void {
    if (this.over) return;
    const bytes = new TextEncoder().encode(text);
    for (let i = 0; i < bytes.byteLength; i += Limits.pasteChunk) {
      this.enqueue(bytes.subarray(i, i + Limits.pasteChunk));
    }
  }

  /** Bytes of input not sent yet. */
  get waitingInput(): number {
    return this.queued;
  }

  private enqueue(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.queue.push(bytes);
    this.queued += bytes.byteLength;
    this.flush();
  }

  // flush sends queued input while the socket is live and credit remains.
  private flush(): void {
    const ws = this.ws;
    while (this.live && ws && ws.readyState === WebSocket.OPEN && this.queue.length > 0) {
      const credit = this.inputWindow - (this.inputSent - this.inputAcked);
      if (credit <= 0) break;
      let chunk = this.queue[0];
      const n = Math.min(chunk.byteLength, credit, Limits.pasteChunk);
      if (n < chunk.byteLength) {
        this.queue[0] = chunk.subarray(n);
        chunk = chunk.subarray(0, n);
      } else {
        this.queue.shift();
      }
      this.queued -= n;
      ws.send(chunk);
      this.inflight.push(chunk);
      this.inputSent += n;
    }
    if (this.live) this.typedWhileDown = 0;
    this.ev.inputWaiting(this.queued);
  }

  // trimInflight forgets sent bytes the server has written.
  private trimInflight(written: number): void {
    let drop = written - this.inputAcked;
    while (drop > 0 && this.inflight.length > 0) {
      const head = this.inflight[0];
      if (head.byteLength <= drop) {
        this.inflight.shift();
        drop -= head.byteLength;
      } else {
        this.inflight[0] = head.subarray(drop);
        drop = 0;
      }
    }
    this.inputAcked = written;
  }

  // onSession lines input up with what the server has: after a resume, whatever it
  // never received goes back to the front of the queue, in order.
  private onSession(received: number, written: number, window: number | undefined): void {
    if (window) this.inputWindow = window;
    if (written > this.inputAcked) this.trimInflight(written);
    // inflight now covers [inputAcked, inputSent); keep [inputAcked, received).
    let keep = received - this.inputAcked;
    const resend: Uint8Array[] = [];
    const kept: Uint8Array[] = [];
    for (const b of this.inflight) {
      if (keep >= b.byteLength) {
        kept.push(b);
        keep -= b.byteLength;
      } else if (keep > 0) {
        kept.push(b.subarray(0, keep));
        resend.push(b.subarray(keep));
        keep = 0;
      } else {
        resend.push(b);
      }
    }
    this.inflight = kept;
    this.inputSent = received;
    for (const b of resend) this.queued += b.byteLength;
    this.queue = resend.concat(this.queue);
    this.live = true;
    this.flush();
  }

  resize(cols: number, rows: number): void {
    this.params.cols = cols;
    this.params.rows = rows;
    this.sendControl({ type: ClientType.resize, cols, rows });
  }

  /** Ends the session from this side (closing the page does the same). */
  close(): void {
    this.over = true;
    this.live = false;
    window.clearInterval(this.pingTimer);
    this.ws?.close(1000, "closed by the user");
  }

  private connect(first: object): void {
    const ws = new WebSocket(this.params.wsURL);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.lastError = null;
    ws.onopen = () => {
      ws.send(JSON.stringify(first));
      window.clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => this.ping(), 5000);
      this.ping();
    };
    ws.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) {
        this.onOutput(new Uint8Array(e.data));
      } else {
        this.onControl(JSON.parse(e.data as string) as ServerMessage);
      }
    };
    ws.onclose = (e) => this.onClose(ws, e);
  }

  private sendControl(msg: object): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  private ping(): void {
    this.pingSentAt = performance.now();
    this.sendControl({ type: ClientType.ping });
  }

  private onOutput(data: Uint8Array): void {
    this.received += data.byteLength;
    this.pendingWrites++;
    this.ev.output(data, () => {
      this.pendingWrites--;
      this.rendered += data.byteLength;
      if (this.rendered - this.acked >= ackStep || this.pendingWrites === 0) {
        this.acked = this.rendered;
        this.sendControl({ type: ClientType.ack, offset: this.rendered });
      }
    });
  }

  private async onControl(msg: ServerMessage): Promise<void> {
    switch (msg.type) {
      case ServerType.status:
        if (msg.state === State.connected) {
          this.attempt = 0;
          this.dropStarted = 0;
        }
        if (msg.state === State.closed) this.exitStatus = msg.exitStatus;
        this.ev.status(msg.state, msg.message ?? "", msg.exitStatus);
        break;
      case ServerType.session:
        this.sessionID = msg.id;
        this.resumeToken = msg.resumeToken;
        this.onSession(msg.inputReceived ?? 0, msg.inputWritten ?? 0, msg.inputWindow);
        break;
      case ServerType.inputack:
        if (msg.offset > this.inputAcked) this.trimInflight(msg.offset);
        this.flush();
        break;
      case ServerType.prompt: {
        const answers = await this.ev.prompt(msg.name ?? "", msg.instruction ?? "", msg.questions ?? []);
        // Cancelling answers nothing; the server then gives up on that method.
        this.sendControl({ type: ClientType.answer, answers: answers ?? [] });
        break;
      }
      case ServerType.hostkey: {
        const accept = await this.ev.hostKey(msg.fingerprint, msg.keyType, !!msg.changed);
        if (!msg.changed) this.sendControl({ type: ClientType.hostkey, accept });
        break;
      }
      case ServerType.pong:
        this.ev.latency(performance.now() - this.pingSentAt);
        break;
      case ServerType.error:
        this.lastError = { code: msg.code, message: msg.message };
        break;
    }
  }

  private onClose(ws: WebSocket, e: CloseEvent): void {
    if (ws !== this.ws) return;
    window.clearInterval(this.pingTimer);
    this.live = false;
    if (this.over) return;
    const message = this.lastError?.message || e.reason || "";
    // Codes that say the session is over: the shell exited, or the server decided.
    const final = e.code === CloseCode.normal || (e.code >= 4000 && e.code < 5000) ||
      e.code === CloseCode.policy || e.code === CloseCode.tooBig || e.code === CloseCode.goingAway;
    if (final || !this.sessionID) {
      this.over = true;
      this.ev.closed(e.code, message || defaultMessage(e.code), this.exitStatus);
      this.dropInput();
      return;
    }
    // The network dropped (1006 and friends): the session waits for us on the server.
    if (!this.dropStarted) this.dropStarted = performance.now();
    if (performance.now() - this.dropStarted > resumeBudgetMs) {
      this.over = true;
      this.ev.closed(e.code, "The connection to shellgate was lost and could not be restored.");
      this.dropInput();
      return;
    }
    this.attempt++;
    const delay = Math.min(500 * 2 ** (this.attempt - 1), 5000);
    this.ev.reconnecting(this.attempt, delay);
    window.setTimeout(() => {
      // Resume from what was received: every received byte is already queued in xterm.js.
      this.connect({ type: ClientType.resume, session: this.sessionID, token: this.resumeToken, offset: this.received });
    }, delay);
  }

  // dropInput tells the person what the end of the session left unsent.
  private dropInput(): void {
    const lost = this.queued;
    this.queue = [];
    this.queued = 0;
    this.ev.inputWaiting(0);
    if (lost > 0) this.ev.inputLost(lost, "ended");
  }
}

function defaultMessage(code: number): string {
  switch (code) {
    case CloseCode.normal:
      return "The session ended.";
    case CloseCode.goingAway:
      return "shellgate is restarting. Open the terminal again in a moment.";
    case CloseCode.ticketInvalid:
      return "This terminal link has expired. Reload the page to open a new session.";
    case CloseCode.sessionNotFound:
      return "The session could not be resumed: it ended while the connection was down.";
    case CloseCode.terminated:
      return "The session was closed by an administrator.";
    case CloseCode.tooManySessions:
      return "You have too many terminals open. Close one and try again.";
    case CloseCode.revoked:
      return "Session ended: your access to this server ended.";
    default:
      return "The connection to shellgate closed unexpectedly.";
  }
}
