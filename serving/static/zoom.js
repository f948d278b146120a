/* Zoom and pan of the photo in the large view: the mouse wheel (or a trackpad's pinch) zooms at
 * the pointer, two fingers pinch, a drag pans once zoomed in, and buttons or + - 0 do it from the
 * keyboard. The figure (photo, mask, boxes, and the review layer) moves as one, by a CSS
 * transform, inside its stage; the boxes keep their screen thickness. */

const MIN_SCALE = 1;
const MAX_SCALE = 8;
const STEP = 1.5;             // one button press or key
const WHEEL_RATE = 0.002;     // zoom per pixel of wheel travel

/** `canPan()` says whether a one-finger or mouse drag pans (in review mode a drag draws boxes). */
export function createZoom(stage, figure, canPan) {
  let scale = 1;
  let x = 0;
  let y = 0;
  const pointers = new Map();   // pointerId -> [clientX, clientY] of each finger or mouse down
  let gesture = null;           // the pinch or pan in progress
  let panned = false;           // the last press was a pan: its click is no tap on a box

  function apply() {
    const width = figure.offsetWidth;
    const height = figure.offsetHeight;
    x = Math.min(0, Math.max(width - width * scale, x));    // the photo always fills its place
    y = Math.min(0, Math.max(height - height * scale, y));
    figure.style.transform = scale === 1 ? "" : `translate(${x}px, ${y}px) scale(${scale})`;
    figure.dataset.zoom = scale.toFixed(3);
    figure.dataset.pan = `${Math.round(x)},${Math.round(y)}`;
    figure.classList.toggle("zoomed", scale > 1);
  }

  // Zoom to `next`, keeping the point under (clientX, clientY) where it is.
  function zoomTo(next, clientX, clientY) {
    const target = Math.min(MAX_SCALE, Math.max(MIN_SCALE, next));
    const rect = figure.getBoundingClientRect();   // as transformed now
    const localX = (clientX - rect.left) / scale;
    const localY = (clientY - rect.top) / scale;
    x -= localX * (target - scale);
    y -= localY * (target - scale);
    scale = target;
    apply();
  }

  function zoomAtCentre(factor) {
    const rect = stage.getBoundingClientRect();
    const box = figure.getBoundingClientRect();
    const cx = Math.max(box.left, rect.left) + Math.min(box.width, rect.width) / 2;
    const cy = Math.max(box.top, rect.top) + Math.min(box.height, rect.height) / 2;
    zoomTo(scale * factor, cx, cy);
  }

  function reset() {
    scale = 1;
    x = 0;
    y = 0;
    pointers.clear();
    gesture = null;
    apply();
  }

  stage.addEventListener("wheel", (event) => {
    event.preventDefault();   // the page does not scroll under the photo
    const lines = event.deltaMode === 1 ? 16 : 1;
    zoomTo(scale * Math.exp(-event.deltaY * lines * WHEEL_RATE), event.clientX, event.clientY);
  }, { passive: false });

  const spread = () => {
    const [a, b] = [...pointers.values()];
    return { distance: Math.hypot(a[0] - b[0], a[1] - b[1]), mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
  };

  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    panned = false;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (pointers.size === 2) {
      const { distance, mid } = spread();
      gesture = { kind: "pinch", distance, scale, mid };
    } else if (pointers.size === 1 && scale > 1 && canPan()) {
      gesture = { kind: "pan", from: [event.clientX, event.clientY], x, y, moved: false };
    }
  });

  stage.addEventListener("pointermove", (event) => {
    if (!pointers.has(event.pointerId)) return;
    pointers.set(event.pointerId, [event.clientX, event.clientY]);
    if (gesture?.kind === "pinch" && pointers.size === 2) {
      const { distance, mid } = spread();
      if (gesture.distance > 0) zoomTo(gesture.scale * (distance / gesture.distance), mid[0], mid[1]);
      x += mid[0] - gesture.mid[0];      // two fingers moving together pan
      y += mid[1] - gesture.mid[1];
      gesture.mid = mid;
      apply();
    } else if (gesture?.kind === "pan") {
      const dx = event.clientX - gesture.from[0];
      const dy = event.clientY - gesture.from[1];
      if (!gesture.moved && Math.hypot(dx, dy) < 4) return;   // a tap stays a tap
      if (!gesture.moved) stage.setPointerCapture?.(event.pointerId);
      gesture.moved = true;
      x = gesture.x + dx;
      y = gesture.y + dy;
      apply();
    }
  });

  const release = (event) => {
    pointers.delete(event.pointerId);
    if (gesture?.kind === "pinch" && pointers.size < 2) gesture = null;
    else if (gesture?.kind === "pan") {
      panned = gesture.moved;
      gesture = null;
    }
  };
  stage.addEventListener("pointerup", release);
  stage.addEventListener("click", (event) => {
    if (panned) event.stopPropagation();
    panned = false;
  }, { capture: true });
  stage.addEventListener("pointercancel", release);

  return {
    zoomIn: () => zoomAtCentre(STEP),
    zoomOut: () => zoomAtCentre(1 / STEP),
    reset,
    get scale() { return scale; },
  };
}
