// The file panel beside the terminal: browse a folder on the server, upload by
// drag-and-drop (files and folders) or picker with per-file progress and cancel,
// download as plain links so the browser streams to disk. Remote names are
// always set as text, never as markup: anyone who can write on the server
// chooses them.

interface Entry {
  name: string;
  path: string;
  size: number;
  perm: string;
  owner?: string;
  group?: string;
  uid: number;
  modTime: string;
  isDir: boolean;
  isLink: boolean;
  linkTarget?: string;
  targetIsDir?: boolean;
  hidden: boolean;
}

interface Listing {
  path: string;
  home: string;
  entries: Entry[];
  truncated: boolean;
  parts: { name: string; path: string }[];
}

/** What a drop or a picker gave: a file and its relative path, or an empty folder (no file). */
type Dropped = { file?: File; rel: string };

/** An upload: one file, its place under the folder it was dropped on, its request. */
interface Upload {
  file: File;
  dir: string;
  rel: string; // name, or sub/dir/name for a file of a dropped folder
  loaded: number;
  state: "queued" | "sending" | "done" | "failed" | "cancelled";
  xhr?: XMLHttpRequest;
  started: number;
  row: HTMLLIElement;
  bar: HTMLProgressElement;
  info: HTMLElement;
  cancel: HTMLButtonElement;
}

const concurrency = 3; // uploads in flight at once
const storageOpen = "shellgate-files-open";
const storageHidden = "shellgate-files-hidden";

export interface FilesOptions {
  csrf: string;
  /** Called when the panel opens or closes, so the terminal refits. */
  layout: () => void;
  /** Another element that accepts drops (the terminal). */
  dropTarget: HTMLElement;
}

// Icons are drawn, not emoji: a server without an emoji font shows boxes.
const iconPaths: Record<string, string> = {
  dir: "M2 5.5A1.5 1.5 0 0 1 3.5 4h3.6l1.6 1.8h7.8A1.5 1.5 0 0 1 18 7.3v7.2a1.5 1.5 0 0 1-1.5 1.5h-13A1.5 1.5 0 0 1 2 14.5z",
  file: "M5 2.5h6.5L15 6v11.5H5zM11.5 2.5V6H15",
  link: "M8.5 11.5l3-3M7 9.5l-1.8 1.8a2.3 2.3 0 0 0 3.3 3.3l1.8-1.8M13 10.5l1.8-1.8a2.3 2.3 0 0 0-3.3-3.3L9.7 7.2",
  download: "M10 3v9M6 8.5l4 4 4-4M4 16h12",
  rename: "M13.5 3.5l3 3-8.5 8.5H5v-3zM11.5 5.5l3 3",
  trash: "M4 6h12M8 6V4h4v2M6 6l.8 10h6.4L14 6M8.5 9v4.5M11.5 9v4.5",
};

function icon(name: string): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("files-svg", `files-svg-${name}`);
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", iconPaths[name]);
  svg.append(p);
  return svg;
}

const el = <T extends HTMLElement>(tag: string, cls?: string, text?: string): T => {
  const e = document.createElement(tag) as T;
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

export function humanSize(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function when(iso: string): string {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

export function initFiles(opts: FilesOptions): void {
  const panel = document.querySelector<HTMLElement>("[data-files]");
  const toggle = document.querySelector<HTMLButtonElement>("[data-files-toggle]");
  if (!panel || !toggle) return;
  const base = panel.dataset.base!;
  const q = <T extends HTMLElement>(sel: string) => panel.querySelector<T>(sel)!;
  const list = q<HTMLUListElement>("[data-files-list]");
  const crumbs = q<HTMLElement>("[data-files-crumbs]");
  const errorBox = q<HTMLElement>("[data-files-error]");
  const summary = q<HTMLElement>("[data-files-summary]");
  const hiddenBox = q<HTMLInputElement>("[data-files-hidden]");
  const transfers = q<HTMLElement>("[data-files-transfers]");
  const queueList = q<HTMLUListElement>("[data-files-queue]");
  const overall = q<HTMLProgressElement>("[data-files-overall]");
  const overallLabel = q<HTMLElement>("[data-files-overall-label]");
  const drop = q<HTMLElement>("[data-files-drop]");
  const fileInput = q<HTMLInputElement>("[data-files-input]");
  const dirInput = q<HTMLInputElement>("[data-files-dir-input]");

  let cwd = "";
  let current: Listing | null = null;
  let loading: AbortController | null = null;

  // --- open / close ------------------------------------------------------------
  function setOpen(open: boolean, focus = false): void {
    panel!.hidden = !open;
    toggle!.setAttribute("aria-expanded", String(open));
    toggle!.classList.toggle("active", open);
    localStorage.setItem(storageOpen, open ? "1" : "0");
    opts.layout();
    if (open && !current) void load(cwd);
    if (open && focus) q<HTMLButtonElement>("[data-files-refresh]").focus();
  }
  toggle.addEventListener("click", () => setOpen(panel.hidden, true));
  q("[data-files-close]").addEventListener("click", () => {
    setOpen(false);
    toggle.focus();
  });
  hiddenBox.checked = localStorage.getItem(storageHidden) === "1";
  hiddenBox.addEventListener("change", () => {
    localStorage.setItem(storageHidden, hiddenBox.checked ? "1" : "0");
    render();
  });

  // --- requests ----------------------------------------------------------------
  async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const resp = await fetch(base + path, {
      method,
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": opts.csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (resp.status === 204) return undefined as T;
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `The server answered ${resp.status}.`);
    return data as T;
  }

  function showError(msg: string): void {
    errorBox.textContent = msg;
    errorBox.hidden = msg === "";
  }

  async function load(path: string, focusName?: string): Promise<void> {
    loading?.abort();
    const ctl = new AbortController();
    loading = ctl;
    panel!.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch(`${base}?path=${encodeURIComponent(path)}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        signal: ctl.signal,
      });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(data.error || `The server answered ${resp.status}.`);
      current = data as Listing;
      cwd = current.path;
      showError("");
      render(focusName);
    } catch (err) {
      if ((err as Error).name !== "AbortError") showError((err as Error).message);
    } finally {
      if (loading === ctl) {
        loading = null;
        panel!.removeAttribute("aria-busy");
      }
    }
  }

  // --- listing -----------------------------------------------------------------
  function render(focusName?: string): void {
    if (!current) return;
    crumbs.replaceChildren(
      ...current.parts.map((p, i) => {
        const b = el<HTMLButtonElement>("button", "files-crumb", p.name);
        b.type = "button";
        if (i === current!.parts.length - 1) b.setAttribute("aria-current", "location");
        b.addEventListener("click", () => void load(p.path));
        return b;
      }),
    );
    const shown = current.entries.filter((e) => hiddenBox.checked || !e.hidden);
    const hidden = current.entries.length - shown.length;
    summary.textContent =
      `${shown.length} item${shown.length === 1 ? "" : "s"}` +
      (hidden ? `, ${hidden} hidden` : "") +
      (current.truncated ? " (list cut short)" : "");
    drop.querySelector("[data-files-drop-dir]")!.textContent = current.path;
    if (shown.length === 0) {
      const li = el<HTMLLIElement>("li", "files-empty muted", "This folder is empty. Drop files here to upload.");
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...shown.map(row));
    if (focusName) {
      list.querySelector<HTMLElement>(`[data-name="${CSS.escape(focusName)}"] .files-name`)?.focus();
    }
  }

  function row(e: Entry): HTMLLIElement {
    const isDir = e.isDir || (e.isLink && !!e.targetIsDir);
    const li = el<HTMLLIElement>("li", "files-row" + (isDir ? " is-dir" : "") + (e.hidden ? " is-hidden" : ""));
    li.dataset.name = e.name;
    const kind = el<HTMLSpanElement>("span", "files-kind");
    kind.append(icon(isDir ? "dir" : e.isLink ? "link" : "file"));
    let name: HTMLElement;
    if (isDir) {
      const b = el<HTMLButtonElement>("button", "files-name", e.name);
      b.type = "button";
      b.title = `Open ${e.name}`;
      b.addEventListener("click", () => void load(e.path));
      name = b;
    } else {
      const a = el<HTMLAnchorElement>("a", "files-name", e.name);
      a.href = `${base}/download?path=${encodeURIComponent(e.path)}`;
      a.title = `Download ${e.name}`;
      a.setAttribute("download", "");
      name = a;
    }
    const meta = el<HTMLSpanElement>("span", "files-meta");
    const owner = e.owner || String(e.uid);
    const parts = [isDir ? "folder" : humanSize(e.size), e.perm, when(e.modTime), owner];
    if (e.isLink && e.linkTarget) parts.push(`→ ${e.linkTarget}`);
    meta.textContent = parts.filter(Boolean).join(" · ");
    meta.title = meta.textContent;
    const text = el<HTMLSpanElement>("span", "files-text");
    text.append(name, meta);

    const actions = el<HTMLSpanElement>("span", "files-row-actions");
    const dl = el<HTMLAnchorElement>("a", "files-icon");
    dl.append(icon("download"));
    dl.href = isDir
      ? `${base}/archive?path=${encodeURIComponent(e.path)}`
      : `${base}/download?path=${encodeURIComponent(e.path)}`;
    dl.setAttribute("download", "");
    dl.title = isDir ? `Download ${e.name} as a zip` : `Download ${e.name}`;
    dl.setAttribute("aria-label", dl.title);
    const ren = iconButton(icon("rename"), `Rename ${e.name}`, () => void rename(e));
    const del = iconButton(icon("trash"), `Delete ${e.name}`, () => void remove(e, isDir));
    del.classList.add("danger");
    actions.append(dl, ren, del);
    li.append(kind, text, actions);
    return li;
  }

  function iconButton(label: string | SVGSVGElement, title: string, onClick: () => void): HTMLButtonElement {
    const b = el<HTMLButtonElement>("button", "files-icon");
    b.append(label);
    b.type = "button";
    b.title = title;
    b.setAttribute("aria-label", title);
    b.addEventListener("click", onClick);
    return b;
  }

  // Backspace goes up a folder, like a file manager.
  list.addEventListener("keydown", (ev) => {
    if (ev.key === "Backspace") {
      ev.preventDefault();
      up();
    }
  });
  function up(): void {
    if (!current || current.parts.length < 2) return;
    const from = current.parts[current.parts.length - 1].name;
    void load(current.parts[current.parts.length - 2].path, from);
  }
  q("[data-files-up]").addEventListener("click", up);
  q("[data-files-refresh]").addEventListener("click", () => void load(cwd));

  // --- dialogs -----------------------------------------------------------------
  const dialog = document.querySelector<HTMLDialogElement>("#files-dialog")!;
  let asking: Promise<unknown> = Promise.resolve();
  /** ask shows one question at a time; it resolves to the text (or "" without input), null when cancelled. */
  function ask(title: string, message: string, o: { input?: string; ok: string; danger?: boolean }): Promise<string | null> {
    const next = asking.then(
      () =>
        new Promise<string | null>((resolve) => {
          const form = dialog.querySelector("form")!;
          const input = dialog.querySelector<HTMLInputElement>("[data-input]")!;
          const okBtn = dialog.querySelector<HTMLButtonElement>("[data-ok]")!;
          dialog.querySelector<HTMLElement>("[data-title]")!.textContent = title;
          dialog.querySelector<HTMLElement>("[data-message]")!.textContent = message;
          dialog.querySelector<HTMLElement>("[data-field]")!.hidden = o.input === undefined;
          input.value = o.input ?? "";
          okBtn.textContent = o.ok;
          okBtn.classList.toggle("btn-danger-solid", !!o.danger);
          okBtn.classList.toggle("btn-primary", !o.danger);
          dialog.returnValue = "";
          dialog.showModal();
          if (o.input !== undefined) {
            input.focus();
            const dot = input.value.lastIndexOf(".");
            input.setSelectionRange(0, dot > 0 ? dot : input.value.length);
          } else okBtn.focus();
          form.onsubmit = (ev) => {
            if ((ev.submitter as HTMLButtonElement | null)?.value === "ok" && o.input !== undefined && input.value.trim() === "") {
              ev.preventDefault();
              input.focus();
            }
          };
          dialog.onclose = () => {
            dialog.onclose = null;
            resolve(dialog.returnValue === "ok" ? input.value : null);
          };
        }),
    );
    asking = next;
    return next;
  }

  async function mkdir(): Promise<void> {
    const name = await ask("New folder", `In ${cwd}`, { input: "", ok: "Create" });
    if (!name) return;
    try {
      await api("POST", "/mkdir", { dir: cwd, name });
      await load(cwd, name);
    } catch (err) {
      showError((err as Error).message);
    }
  }
  q("[data-files-mkdir]").addEventListener("click", () => void mkdir());

  async function rename(e: Entry): Promise<void> {
    const name = await ask(`Rename ${e.name}`, "", { input: e.name, ok: "Rename" });
    if (!name || name === e.name) return;
    try {
      await api("POST", "/rename", { path: e.path, name });
      await load(cwd, name);
    } catch (err) {
      showError((err as Error).message);
    }
  }

  async function remove(e: Entry, isDir: boolean): Promise<void> {
    let message = `${e.path} will be deleted from the server. This cannot be undone.`;
    if (isDir && !e.isLink) {
      try {
        const c = await api<{ files: number; dirs: number; bytes: number; more: boolean }>(
          "GET",
          `/count?path=${encodeURIComponent(e.path)}`,
        );
        // CountTree counts what is inside: the folder itself is not among c.dirs.
        const what =
          c.files === 0 && c.dirs === 0
            ? "It is empty."
            : `It holds ${c.more ? "more than " : ""}${c.files} file${c.files === 1 ? "" : "s"}` +
              (c.dirs > 0 ? ` and ${c.dirs} folder${c.dirs === 1 ? "" : "s"}` : "") +
              ` (${humanSize(c.bytes)}), all of which will be deleted.`;
        message = `The folder ${e.path} will be deleted from the server. ${what} This cannot be undone.`;
      } catch (err) {
        showError((err as Error).message);
        return;
      }
    }
    const ok = await ask(`Delete ${e.name}?`, message, { ok: "Delete", danger: true });
    if (ok === null) return;
    try {
      await api("POST", "/delete", { path: e.path });
      await load(cwd);
    } catch (err) {
      showError((err as Error).message);
    }
  }

  // --- uploads -----------------------------------------------------------------
  const uploads: Upload[] = [];
  let active = 0;

  function enqueue(dropped: Dropped[]): void {
    if (dropped.length === 0) return;
    if (panel!.hidden) setOpen(true);
    const dir = cwd;
    const folders = dropped.filter((d) => !d.file).map((d) => d.rel);
    const items = dropped.filter((d): d is { file: File; rel: string } => !!d.file);
    if (folders.length > 0) {
      void Promise.all(folders.map((rel) => api("POST", "/mkdir", { dir, rel })))
        .then(() => items.length === 0 && load(cwd))
        .catch((err: Error) => showError(err.message));
    }
    if (items.length === 0) return;
    transfers.hidden = false;
    // A new batch: finished rows go, so the overall bar measures this batch; failed
    // and cancelled ones stay until cleared, so no error goes unseen.
    if (!uploads.some((u) => u.state === "sending" || u.state === "queued")) {
      for (let i = uploads.length - 1; i >= 0; i--) {
        if (uploads[i].state === "done") uploads.splice(i, 1)[0].row.remove();
      }
    }
    let first: HTMLLIElement | undefined;
    for (const it of items) {
      const row = el<HTMLLIElement>("li", "files-upload");
      const name = el<HTMLSpanElement>("span", "files-upload-name", it.rel);
      name.title = it.rel;
      const bar = el<HTMLProgressElement>("progress");
      bar.max = it.file.size || 1;
      bar.value = 0;
      bar.setAttribute("aria-label", `Upload of ${it.rel}`);
      const info = el<HTMLSpanElement>("span", "files-upload-info muted", "Waiting…");
      const cancel = iconButton("×", `Cancel ${it.rel}`, () => cancelUpload(u));
      row.append(name, cancel, bar, info);
      queueList.append(row);
      const u: Upload = { file: it.file, dir, rel: it.rel, loaded: 0, state: "queued", started: 0, row, bar, info, cancel };
      row.dataset.state = "queued";
      uploads.push(u);
      first ??= row;
    }
    first?.scrollIntoView({ block: "nearest" });
    pump();
    updateOverall();
  }

  function pump(): void {
    while (active < concurrency) {
      const u = uploads.find((x) => x.state === "queued");
      if (!u) break;
      active++;
      void send(u, false).finally(() => {
        active--;
        pump();
        if (active === 0 && !uploads.some((x) => x.state === "queued")) void load(cwd);
      });
    }
  }

  function setState(u: Upload, state: Upload["state"], text: string): void {
    u.state = state;
    u.row.dataset.state = state;
    u.info.textContent = text;
    if (state !== "sending" && state !== "queued") u.cancel.hidden = true;
    updateOverall();
  }

  function send(u: Upload, overwrite: boolean): Promise<void> {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      u.xhr = xhr;
      u.started = performance.now();
      u.loaded = 0;
      setState(u, "sending", "Starting…");
      const params = new URLSearchParams({ dir: u.dir, name: u.rel, size: String(u.file.size), overwrite: overwrite ? "1" : "0" });
      xhr.open("PUT", `${base}/upload?${params}`);
      xhr.setRequestHeader("X-CSRF-Token", opts.csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (ev) => {
        u.loaded = ev.loaded;
        u.bar.value = ev.loaded;
        const secs = (performance.now() - u.started) / 1000;
        const pct = u.file.size ? Math.floor((ev.loaded / u.file.size) * 100) : 100;
        u.info.textContent = `${pct}% · ${humanSize(ev.loaded)} of ${humanSize(u.file.size)}` +
          (secs > 0.2 ? ` · ${humanSize(ev.loaded / secs)}/s` : "");
        updateOverall();
      };
      xhr.onload = async () => {
        let body: { error?: string; exists?: boolean } = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          /* not JSON */
        }
        if (xhr.status === 200) {
          u.loaded = u.file.size;
          u.bar.value = u.bar.max;
          const secs = (performance.now() - u.started) / 1000;
          setState(u, "done", `100% · ${humanSize(u.file.size)}` + (secs > 0.2 ? ` · ${humanSize(u.file.size / secs)}/s` : ""));
        } else if (xhr.status === 409 && body.exists && !overwrite) {
          setState(u, "sending", "Already exists: waiting for your answer…");
          const yes = await ask(`Replace ${u.rel}?`, `${joinPath(u.dir, u.rel)} already exists on the server. Replace it with the file you are uploading?`, {
            ok: "Replace",
            danger: true,
          });
          if (yes === null) setState(u, "cancelled", "Skipped: a file of that name exists.");
          else await send(u, true);
        } else {
          setState(u, "failed", body.error || `Upload failed (HTTP ${xhr.status}).`);
        }
        resolve();
      };
      xhr.onerror = () => {
        setState(u, "failed", "The upload was interrupted: the connection to shellgate failed.");
        resolve();
      };
      xhr.onabort = () => {
        setState(u, "cancelled", "Cancelled; nothing was written.");
        resolve();
      };
      // The browser streams the file from disk; nothing is read into memory here.
      xhr.send(u.file);
    });
  }

  function cancelUpload(u: Upload): void {
    if (u.state === "sending") u.xhr?.abort(); // the server removes the temporary file
    else if (u.state === "queued") setState(u, "cancelled", "Cancelled.");
  }

  function updateOverall(): void {
    const live = uploads.filter((u) => u.state !== "cancelled");
    const total = live.reduce((n, u) => n + u.file.size, 0);
    const loaded = live.reduce((n, u) => n + (u.state === "done" ? u.file.size : u.loaded), 0);
    const done = uploads.filter((u) => u.state === "done").length;
    const failed = uploads.filter((u) => u.state === "failed").length;
    overall.max = total || 1;
    overall.value = total ? loaded : live.length && done === live.length ? 1 : 0;
    const pct = total ? Math.floor((loaded / total) * 100) : done === live.length ? 100 : 0;
    overallLabel.textContent = `${done} of ${uploads.length} uploaded · ${pct}%` + (failed ? ` · ${failed} failed` : "");
    overall.setAttribute("aria-label", overallLabel.textContent);
  }

  q("[data-files-clear]").addEventListener("click", () => {
    for (let i = uploads.length - 1; i >= 0; i--) {
      if (uploads[i].state !== "sending" && uploads[i].state !== "queued") {
        uploads[i].row.remove();
        uploads.splice(i, 1);
      }
    }
    transfers.hidden = uploads.length === 0;
    updateOverall();
  });

  // Pickers: plain files, or a folder (each file carries webkitRelativePath).
  q("[data-files-pick]").addEventListener("click", () => fileInput.click());
  q("[data-files-pick-dir]").addEventListener("click", () => dirInput.click());
  const fromInput = (input: HTMLInputElement) => {
    enqueue([...(input.files ?? [])].map((f) => ({ file: f, rel: f.webkitRelativePath || f.name })));
    input.value = "";
  };
  fileInput.addEventListener("change", () => fromInput(fileInput));
  dirInput.addEventListener("change", () => fromInput(dirInput));

  // Drag and drop, on the panel or the terminal.
  let dragDepth = 0;
  const hasFiles = (ev: DragEvent) => !!ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  for (const target of [panel, opts.dropTarget]) {
    target.addEventListener("dragenter", (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      dragDepth++;
      if (panel.hidden) setOpen(true);
      drop.hidden = false;
    });
    target.addEventListener("dragover", (ev) => {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      ev.dataTransfer!.dropEffect = "copy";
    });
    target.addEventListener("dragleave", () => {
      dragDepth = Math.max(0, dragDepth - 1);
      if (dragDepth === 0) drop.hidden = true;
    });
    target.addEventListener("drop", (ev) => {
      if (!ev.dataTransfer) return;
      ev.preventDefault();
      ev.stopPropagation();
      dragDepth = 0;
      drop.hidden = true;
      void dropped(ev.dataTransfer).then(enqueue, (err: Error) => showError(err.message));
    });
  }

  // A file dropped anywhere else would make the browser open it, leaving the terminal.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (ev) => {
      if (hasFiles(ev as DragEvent)) ev.preventDefault();
    });
  }

  if (localStorage.getItem(storageOpen) === "1") setOpen(true);
}

// dropped turns a drop into files with their relative paths. Folders are walked
// through webkitGetAsEntry; a File without an entry (a synthetic drop, older
// browsers) uses its webkitRelativePath or its name.
export async function dropped(dt: DataTransfer): Promise<Dropped[]> {
  const out: Dropped[] = [];
  const walks: Promise<void>[] = [];
  const items = [...dt.items].filter((i) => i.kind === "file");
  if (items.length === 0) {
    for (const f of dt.files) out.push({ file: f, rel: f.webkitRelativePath || f.name });
    return out;
  }
  for (const item of items) {
    // Both must be read synchronously, before the drop event returns.
    const entry = item.webkitGetAsEntry?.();
    const file = item.getAsFile();
    if (entry) walks.push(walk(entry, out));
    else if (file) out.push({ file, rel: file.webkitRelativePath || file.name });
  }
  await Promise.all(walks);
  return out;
}

async function walk(entry: FileSystemEntry, out: Dropped[], depth = 0): Promise<void> {
  if (depth > 64) return;
  const rel = entry.fullPath.replace(/^\/+/, "") || entry.name;
  if (entry.isFile) {
    const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
    out.push({ file, rel });
    return;
  }
  if (!entry.isDirectory) return;
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  // readEntries answers in batches (100 in Chromium) until it returns none.
  let children = 0;
  for (let i = 0; i < 10_000; i++) {
    const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
    if (batch.length === 0) break;
    children += batch.length;
    for (const child of batch) await walk(child, out, depth + 1);
  }
  // An empty folder has no file to carry its path: it is created on its own.
  if (children === 0) out.push({ rel });
}
