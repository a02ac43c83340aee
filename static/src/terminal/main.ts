// The terminal page: xterm.js bridged to an SSH session through shellgate.
import "./nonce";
import { Terminal, type ITheme } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { SearchAddon } from "@xterm/addon-search";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebglAddon } from "@xterm/addon-webgl";
import { ClipboardAddon } from "@xterm/addon-clipboard";
import { TerminalConnection } from "./connection";
import { State, type Question } from "./protocol";
import { initFiles } from "./files";

const root = document.querySelector<HTMLElement>("[data-terminal]")!;
const stackID = root.dataset.stack!;
const serverID = root.dataset.server!;
const serverName = root.dataset.serverName ?? "server";
const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
const stateEl = document.querySelector<HTMLElement>("[data-state]")!;
const latencyEl = document.querySelector<HTMLElement>("[data-latency]")!;
const reconnectBtn = document.querySelector<HTMLButtonElement>("[data-reconnect]")!;

const prefs = {
  get fontSize(): number {
    return Number(localStorage.getItem("shellgate-term-font")) || 14;
  },
  set fontSize(v: number) {
    localStorage.setItem("shellgate-term-font", String(v));
  },
  get copyOnSelect(): boolean {
    return localStorage.getItem("shellgate-term-copy-on-select") === "1";
  },
  set copyOnSelect(v: boolean) {
    localStorage.setItem("shellgate-term-copy-on-select", v ? "1" : "0");
  },
};

// The terminal follows the dashboard's theme (light or dark).
function theme(): ITheme {
  const dark = document.documentElement.dataset.theme === "dark" ||
    (document.documentElement.dataset.theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  return dark
    ? { background: "#0b1016", foreground: "#dce3ec", cursor: "#7aa6ff", selectionBackground: "#2a4470" }
    : { background: "#fbfcfd", foreground: "#1b2430", cursor: "#2f6fed", selectionBackground: "#c8dafc",
        black: "#1b2430", brightBlack: "#5c6878", white: "#d0d6de", brightWhite: "#ffffff", yellow: "#9a6300" };
}

const term = new Terminal({
  allowProposedApi: true, // unicode11 needs it
  fontFamily: 'ui-monospace, "SF Mono", "JetBrains Mono", "DejaVu Sans Mono", Menlo, Consolas, monospace',
  fontSize: prefs.fontSize,
  cursorBlink: true,
  scrollback: 10000,
  theme: theme(),
  rightClickSelectsWord: false,
});
const fit = new FitAddon();
const search = new SearchAddon();
term.loadAddon(fit);
term.loadAddon(search);
term.loadAddon(new WebLinksAddon());
// OSC 52: a remote program may write the clipboard (a documented feature), never read
// it: the provider answers nothing, and reads are swallowed before the addon sees them
// (handlers registered later run first), so no reply, not even an empty one, is sent.
term.loadAddon(new ClipboardAddon(undefined, {
  readText: () => "",
  writeText: (_selection, text) => navigator.clipboard.writeText(text),
}));
term.parser.registerOscHandler(52, (data) => data.split(";")[1] === "?");
const unicode = new Unicode11Addon();
term.loadAddon(unicode);
term.unicode.activeVersion = "11";
term.open(document.getElementById("terminal")!);
// WebGL is fastest; when the context is lost (GPU reset, too many tabs) fall back to
// the DOM renderer instead of showing a dead canvas.
try {
  const webgl = new WebglAddon();
  webgl.onContextLoss(() => webgl.dispose());
  term.loadAddon(webgl);
} catch {
  /* no WebGL here: the DOM renderer stays */
}
fit.fit();
window.addEventListener("resize", () => fit.fit());
// With the WebGL renderer the screen is a canvas, not text: browser tests and
// accessibility tools read the buffer through this handle. It exposes nothing the
// page's own scripts could not reach.
(window as unknown as { shellgateTerminal: Terminal }).shellgateTerminal = term;
// The live connection, for browser tests that cut the socket to exercise resume.
Object.defineProperty(window, "shellgateConnection", { get: () => conn });
new MutationObserver(() => (term.options.theme = theme())).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });

let stateLabel = "";
let inputWaiting = 0;
function setState(state: string, label: string): void {
  stateEl.dataset.state = state;
  stateLabel = label;
  renderState();
}
// The status line says when typed or pasted input is waiting to go out (while
// reconnecting, or a large paste on its way).
function renderState(): void {
  stateEl.dataset.inputWaiting = String(inputWaiting);
  stateEl.textContent = inputWaiting > 0 ? `${stateLabel} · input waiting (${formatBytes(inputWaiting)})` : stateLabel;
}
function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// Pasted text is sanitised on every path (keyboard, context menu, middle click, text
// dropped on the terminal): ESC and the other C0 controls except tab, CR and LF, DEL
// and the C1 controls are removed, so a poisoned clipboard cannot end a bracketed
// paste early (ESC [201~) and run what follows. Line feeds become CR, as xterm.js does.
function sanitizePaste(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g, "").replace(/\r?\n/g, "\r");
}
function pasteText(text: string): void {
  if (!text || !conn) return;
  let data = sanitizePaste(text);
  if (term.modes.bracketedPasteMode) data = "\x1b[200~" + data + "\x1b[201~";
  term.scrollToBottom();
  conn.paste(data);
}

async function fetchTicket(): Promise<string> {
  const resp = await fetch("/api/terminal/tickets", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ stack: stackID, server: serverID }),
    credentials: "same-origin",
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `Could not open a terminal (HTTP ${resp.status}).`);
  return body.ticket as string;
}

let conn: TerminalConnection;

function start(): void {
  reconnectBtn.hidden = true;
  setState("connecting", "Connecting…");
  const wsURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/terminal/ws";
  conn = new TerminalConnection({ wsURL, server: serverID, cols: term.cols, rows: term.rows, ticket: fetchTicket }, {
    output: (data, done) => term.write(data, done),
    status: (state, message) => {
      if (state === State.connected) setState("connected", "Connected");
      else if (state === State.connecting) setState("connecting", message || "Connecting…");
      else if (state === State.prompt) setState("prompt", "Waiting for you");
    },
    prompt: askPrompt,
    hostKey: askHostKey,
    reconnecting: (attempt) => setState("reconnecting", attempt > 1 ? `Reconnecting (try ${attempt})…` : "Reconnecting…"),
    latency: (ms) => (latencyEl.textContent = `${ms < 1 ? ms.toFixed(1) : Math.round(ms)} ms`),
    inputWaiting: (bytes) => {
      inputWaiting = bytes;
      renderState();
    },
    inputLost: (bytes, why) => {
      const what = why === "overflow"
        ? `Typing while reconnecting is kept up to ${formatBytes(64 * 1024)}; ${formatBytes(bytes)} more were not sent.`
        : `The session ended before ${formatBytes(bytes)} of typed or pasted input could be sent: the paste was cut.`;
      term.write(`\r\n\x1b[33m${what}\x1b[0m\r\n`);
    },
    closed: (code, message, exitStatus) => {
      setState("closed", "Closed");
      latencyEl.textContent = "";
      const status = exitStatus !== undefined && exitStatus !== null ? ` (exit status ${exitStatus})` : "";
      const text = code === 1000 ? `Connection to ${serverName} closed.${status}` : message;
      term.write(`\r\n\x1b[2m${text}\x1b[0m\r\n`);
      closedMessage(text);
      reconnectBtn.hidden = false;
      reconnectBtn.focus();
    },
  });
  conn.open().catch((err: Error) => {
    setState("closed", "Not connected");
    term.write(`\r\n${err.message}\r\n`);
    closedMessage(err.message);
    reconnectBtn.hidden = false;
  });
}

function closedMessage(text: string): void {
  document.querySelector<HTMLElement>("[data-closed-message]")!.textContent = text;
  document.querySelector<HTMLElement>("[data-closed-message-box]")!.hidden = false;
}

term.onData((d) => conn?.input(d));
term.onBinary((d) => conn?.input(Uint8Array.from(d, (c) => c.charCodeAt(0))));
// Resizes arrive in bursts while dragging; the server coalesces them too.
let resizeTimer = 0;
term.onResize(({ cols, rows }) => {
  window.clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => conn?.resize(cols, rows), 30);
});

// Copy and paste: Ctrl+Shift+C / Ctrl+Shift+V (Ctrl+C stays an interrupt), right-click
// pastes, and copy-on-select is optional.
term.attachCustomKeyEventHandler((ev) => {
  if (ev.type !== "keydown") return true;
  const mod = ev.ctrlKey || ev.metaKey;
  if (mod && ev.shiftKey && ev.code === "KeyC") {
    if (term.hasSelection()) void navigator.clipboard.writeText(term.getSelection());
    return false;
  }
  if (mod && ev.shiftKey && ev.code === "KeyV") {
    void navigator.clipboard.readText().then(pasteText).catch(() => undefined);
    ev.preventDefault();
    return false;
  }
  if (mod && !ev.shiftKey && ev.code === "KeyF") {
    openSearch();
    ev.preventDefault();
    return false;
  }
  return true;
});
term.element!.addEventListener("contextmenu", (ev) => {
  ev.preventDefault();
  void navigator.clipboard.readText().then(pasteText).catch(() => undefined);
});
// Paste events (Ctrl+V / Cmd+V, the browser's menu, middle click) are taken before
// xterm.js's own handlers, which would send the text unsanitised and in one frame.
document.addEventListener("paste", (ev) => {
  if (!(ev.target instanceof Node) || !term.element!.contains(ev.target)) return;
  ev.preventDefault();
  ev.stopImmediatePropagation();
  pasteText(ev.clipboardData?.getData("text/plain") ?? "");
}, true);
// Text dragged onto the terminal is pasted the same way (files go to the file panel).
const isTextDrag = (ev: DragEvent) => !!ev.dataTransfer && !ev.dataTransfer.types.includes("Files") && ev.dataTransfer.types.includes("text/plain");
term.element!.addEventListener("dragover", (ev) => {
  if (isTextDrag(ev)) ev.preventDefault();
}, true);
term.element!.addEventListener("drop", (ev) => {
  if (!isTextDrag(ev)) return;
  ev.preventDefault();
  ev.stopImmediatePropagation();
  pasteText(ev.dataTransfer!.getData("text/plain"));
}, true);
term.onSelectionChange(() => {
  if (prefs.copyOnSelect && term.hasSelection()) void navigator.clipboard.writeText(term.getSelection()).catch(() => undefined);
});

// Toolbar
const fontLabel = document.querySelector<HTMLElement>("[data-font-size]")!;
function setFont(size: number): void {
  size = Math.max(8, Math.min(32, size));
  prefs.fontSize = size;
  term.options.fontSize = size;
  fontLabel.textContent = String(size);
  fit.fit();
}
fontLabel.textContent = String(prefs.fontSize);
document.querySelector("[data-font-smaller]")!.addEventListener("click", () => setFont(prefs.fontSize - 1));
document.querySelector("[data-font-larger]")!.addEventListener("click", () => setFont(prefs.fontSize + 1));
const copySelect = document.querySelector<HTMLInputElement>("[data-copy-on-select]")!;
copySelect.checked = prefs.copyOnSelect;
copySelect.addEventListener("change", () => (prefs.copyOnSelect = copySelect.checked));
reconnectBtn.addEventListener("click", () => {
  document.querySelector<HTMLElement>("[data-closed-message-box]")!.hidden = true;
  term.reset();
  start();
  term.focus();
});

// Search (Ctrl/Cmd+F)
const searchBox = document.querySelector<HTMLElement>("[data-search]")!;
const searchInput = searchBox.querySelector("input")!;
function openSearch(): void {
  searchBox.hidden = false;
  searchInput.focus();
  searchInput.select();
}
document.querySelector("[data-open-search]")!.addEventListener("click", openSearch);
searchInput.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") {
    if (ev.shiftKey) search.findPrevious(searchInput.value);
    else search.findNext(searchInput.value);
  } else if (ev.key === "Escape") {
    searchBox.hidden = true;
    search.clearDecorations();
    term.focus();
  }
});

// Authentication prompts (password, keyboard-interactive, key passphrase) in a dialog.
function askPrompt(name: string, instruction: string, questions: Question[]): Promise<string[] | null> {
  const dialog = document.querySelector<HTMLDialogElement>("#prompt-dialog")!;
  const form = dialog.querySelector("form")!;
  const fields = form.querySelector<HTMLElement>("[data-fields]")!;
  dialog.querySelector<HTMLElement>("[data-title]")!.textContent = name || `Sign in to ${serverName}`;
  dialog.querySelector<HTMLElement>("[data-instruction]")!.textContent = instruction;
  fields.replaceChildren(
    ...questions.map((q, i) => {
      const label = document.createElement("label");
      label.className = "field";
      const span = document.createElement("span");
      span.textContent = q.text.trim() || `Answer ${i + 1}`;
      const input = document.createElement("input");
      input.type = q.echo ? "text" : "password";
      input.name = `a${i}`;
      input.autocomplete = q.echo ? "off" : "current-password";
      label.append(span, input);
      return label;
    }),
  );
  setState("prompt", "Waiting for you");
  dialog.showModal();
  fields.querySelector("input")?.focus();
  return new Promise((resolve) => {
    const done = (answers: string[] | null) => {
      form.onsubmit = null;
      dialog.onclose = null;
      dialog.close();
      // Clear the fields so no answer lingers in the DOM.
      fields.replaceChildren();
      term.focus();
      resolve(answers);
    };
    form.onsubmit = (ev) => {
      ev.preventDefault();
      if ((ev.submitter as HTMLButtonElement | null)?.value === "cancel") return done(null);
      done(questions.map((_, i) => (form.elements.namedItem(`a${i}`) as HTMLInputElement).value));
    };
    dialog.onclose = () => done(null);
  });
}

function askHostKey(fingerprint: string, keyType: string, changed: boolean): Promise<boolean> {
  const dialog = document.querySelector<HTMLDialogElement>("#hostkey-dialog")!;
  dialog.querySelector<HTMLElement>("[data-fingerprint]")!.textContent = fingerprint;
  dialog.querySelector<HTMLElement>("[data-keytype]")!.textContent = keyType;
  dialog.querySelector<HTMLElement>("[data-unknown]")!.hidden = changed;
  dialog.querySelector<HTMLElement>("[data-changed]")!.hidden = !changed;
  dialog.querySelector<HTMLElement>("[data-accept]")!.hidden = changed;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.onclose = () => {
      dialog.onclose = null;
      term.focus();
      resolve(dialog.returnValue === "accept");
    };
  });
}

// The file panel; uploads can be dropped on the terminal too.
initFiles({ csrf, layout: () => fit.fit(), dropTarget: document.getElementById("terminal")! });

start();
term.focus();
