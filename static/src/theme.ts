// Applies the saved theme before first paint. The choice is not a secret, so it lives in
// localStorage; without a saved choice the system preference applies (CSS media query).
try {
  const saved = localStorage.getItem("shellgate-theme");
  if (saved === "light" || saved === "dark") {
    document.documentElement.dataset.theme = saved;
  }
} catch {
  /* storage may be disabled; the system theme applies */
}
