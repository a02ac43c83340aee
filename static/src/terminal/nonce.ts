// xterm.js injects <style> elements for its themes and layout, and takes no CSP nonce.
// Stamp this page's nonce on every <style> at creation (before insertion, or the sheet
// stays inert), so the page's CSP can stay strict instead of allowing 'unsafe-inline'.
// Imported first by the terminal entry point, before xterm.js creates anything.
const nonce = document.querySelector<HTMLScriptElement>("script[nonce]")?.nonce ?? "";
if (nonce) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, opts?: ElementCreationOptions) {
    const el = create.call(this, tag, opts);
    if (tag.toLowerCase() === "style") el.setAttribute("nonce", nonce);
    return el;
  } as typeof Document.prototype.createElement;
}
export {};
