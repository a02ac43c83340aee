// Dashboard behaviour shared by every page: theme toggle, confirmations, copy buttons,
// closing the user menu. Pages work without it; it only adds comfort.

function currentTheme(): "light" | "dark" {
  const set = document.documentElement.dataset.theme;
  if (set === "light" || set === "dark") return set;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function initThemeToggle(): void {
  for (const btn of document.querySelectorAll<HTMLButtonElement>("[data-theme-toggle]")) {
    btn.addEventListener("click", () => {
      const next = currentTheme() === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      try {
        localStorage.setItem("shellgate-theme", next);
      } catch {
        /* not persisted; still applied for this page */
      }
    });
  }
}

// Buttons with data-confirm ask before their form is submitted.
function initConfirm(): void {
  document.addEventListener("click", (ev) => {
    const el = (ev.target as Element | null)?.closest<HTMLElement>("[data-confirm]");
    if (el && !window.confirm(el.dataset.confirm ?? "Are you sure?")) {
      ev.preventDefault();
    }
  });
}

function initCopy(): void {
  for (const el of document.querySelectorAll<HTMLElement>("[data-copy]")) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "btn btn-small copy-btn";
    btn.textContent = "Copy";
    btn.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(el.textContent ?? "");
        btn.textContent = "Copied";
      } catch {
        btn.textContent = "Select and copy";
      }
      setTimeout(() => (btn.textContent = "Copy"), 1500);
    });
    el.after(btn);
  }
}

// [data-tabs] holds links [data-tab=X] and panels [data-panel=X]. The links work without
// JavaScript (the server renders the chosen panel); with it they switch in place and
// keep the URL in step, so a reload shows the same form.
function initTabs(): void {
  for (const root of document.querySelectorAll<HTMLElement>("[data-tabs]")) {
    const tabs = root.querySelectorAll<HTMLAnchorElement>("[data-tab]");
    const panels = root.querySelectorAll<HTMLElement>("[data-panel]");
    for (const tab of tabs) {
      tab.addEventListener("click", (ev) => {
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        const key = tab.dataset.tab;
        for (const t of tabs) {
          const on = t === tab;
          t.classList.toggle("active", on);
          if (on) t.setAttribute("aria-current", "true");
          else t.removeAttribute("aria-current");
        }
        for (const p of panels) p.hidden = p.dataset.panel !== key;
        history.replaceState(null, "", tab.href);
        root.querySelector<HTMLElement>(`[data-panel="${key}"] input:not([type=hidden]), [data-panel="${key}"] textarea`)?.focus();
      });
    }
  }
}

// The user menu is a <details>; close it on Escape and on a click elsewhere.
function initMenus(): void {
  const menus = document.querySelectorAll<HTMLDetailsElement>("details.user-menu");
  document.addEventListener("click", (ev) => {
    for (const m of menus) if (!m.contains(ev.target as Node)) m.open = false;
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    for (const m of menus) {
      if (m.open) {
        m.open = false;
        m.querySelector("summary")?.focus();
      }
    }
  });
}

initThemeToggle();
initConfirm();
initCopy();
initTabs();
initMenus();
