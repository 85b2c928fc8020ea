// Shared by the ticker (public port, /canvas.js) and the admin view (internal port, /admin/canvas.js).

// Draw a canvas at the size it is shown, times the screen's pixel ratio, so 12 px labels stay
// 12 px on a phone instead of shrinking with a wide drawing scaled down to fit. Returns the ratio.
export function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return ratio;
}
