// The recording page: plays one session's asciicast with asciinema-player.
// The nonce shim comes first: the player creates <style> elements that the strict
// CSP would otherwise keep inert.
import "./terminal/nonce";
import * as AsciinemaPlayer from "asciinema-player";

const el = document.getElementById("player");
const src = el?.dataset.cast;
if (el && src) {
  const player = AsciinemaPlayer.create(src, el, {
    fit: "width",
    idleTimeLimit: 2, // long pauses in a session are cut to 2 s
    preload: true,
    controls: true,
    terminalFontFamily: "ui-monospace, 'JetBrains Mono', Menlo, Consolas, monospace",
  });
  // Speed is fixed at creation in asciinema-player: re-create at the chosen speed,
  // keeping the position.
  let current = player;
  const speed = document.getElementById("player-speed") as HTMLSelectElement | null;
  speed?.addEventListener("change", async () => {
    const at = await current.getCurrentTime();
    current.dispose();
    el.replaceChildren();
    current = AsciinemaPlayer.create(src, el, {
      fit: "width",
      idleTimeLimit: 2,
      preload: true,
      speed: Number(speed.value) || 1,
      startAt: at,
      autoPlay: true,
    });
  });
  (window as unknown as { player: unknown }).player = {
    get: () => current,
  };
}
