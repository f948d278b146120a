/* Drawing the boxes: SVG over each photo, labels on hover, tap and focus, and on a canvas for the PNG. */



// Every box is a coloured line on a dark halo, so it reads on green plants and on pale soil
// alike: crop white (green vanished on the crop's own leaves), weed magenta, `plant`
// (green-on-brown) orange; serving/annotate.py draws the same for /v1/annotate.
const CLASS_COLOURS = { crop: "#ffffff", weed: "#e61ec8", plant: "#ffa500" };
const HALO = "#0d1a0d";
const PALETTE = ["#ffa500", "#1e90ff", "#ffd700", "#ff69b4"];

const SVG_NS = "http://www.w3.org/2000/svg";

export function colourFor(name, classId) {
  return CLASS_COLOURS[name] || PALETTE[classId % PALETTE.length];
}

// Dark text on light label chips (crop white, plant orange), white text on the others.
function labelTextColour(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.3 ? "#111111" : "#ffffff";
}

function boxLabel(det) {
  return `${det.class_name} ${det.confidence.toFixed(2)}`;
}

export function drawSvgBoxes(svg, photo, focusable) {
  const { width, height } = photo.answer.image;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const groups = photo.dets.map((det) => {
    const { x1, y1, x2, y2 } = det.box;
    const g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("class", "box");
    g.dataset.class = det.class_name;
    g.dataset.confidence = String(det.confidence);
    for (const part of ["halo", "line"]) {
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("class", part);
      rect.setAttribute("x", x1);
      rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(0, x2 - x1));
      rect.setAttribute("height", Math.max(0, y2 - y1));
      rect.setAttribute("stroke", part === "halo" ? HALO : colourFor(det.class_name, det.class_id));
      g.append(rect);
    }
    if (focusable) {
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "img");
      g.setAttribute("aria-label", `${det.class_name}, confidence ${det.confidence.toFixed(2)}`);
    }
    g.weedscanDet = det;
    return g;
  });
  const byArea = groups.map((g, i) => [g, boxArea(photo.dets[i].box)]).sort((a, b) => b[1] - a[1]);
  svg.replaceChildren(...byArea.map(([g]) => g));
  return groups;
}

function boxArea(box) {
  return Math.max(0, box.x2 - box.x1) * Math.max(0, box.y2 - box.y1);
}

// ---- box labels: class and confidence on hover, tap and keyboard focus --------------------
// Where the pointer last was, page-wide. The browser replays pointerover when the layout moves
// under a resting pointer (a dialog opens); such a replay must not take the label from the box
// the keyboard focused.
let lastPointer = null;
document.addEventListener("pointermove", (event) => { lastPointer = [event.clientX, event.clientY]; },
                          { capture: true, passive: true });

export function hoverLabels(svg, label, currentPhoto) {
  let pinned = null;
  const boxOf = (target) => (target && target.closest ? target.closest(".box") : null);
  const show = (g) => {
    const photo = currentPhoto();
    if (!g || !photo || !photo.answer) return;
    placeLabel(label, g.weedscanDet, photo.answer.image);
  };
  svg.addEventListener("pointerover", (event) => {
    const still = lastPointer && lastPointer[0] === event.clientX && lastPointer[1] === event.clientY;
    lastPointer = [event.clientX, event.clientY];
    if (pinned && still) return;              // a replay under a resting pointer: focus keeps it
    show(boxOf(event.target));
  });
  svg.addEventListener("pointerout", (event) => {
    if (boxOf(event.relatedTarget)) return;          // moving onto another box
    if (pinned) show(pinned); else label.hidden = true;
  });
  svg.addEventListener("focusin", (event) => { pinned = boxOf(event.target); show(pinned); });
  svg.addEventListener("focusout", () => { pinned = null; label.hidden = true; });
  svg.addEventListener("click", (event) => {
    const g = boxOf(event.target);
    if (!g || !g.hasAttribute("tabindex")) return;   // in the cards a click opens the photo
    g.focus({ preventScroll: true });                 // a tap pins the label as focus does
    pinned = g;
    show(g);
  });
}

function placeLabel(label, det, image) {
  const { x1, y1, x2 } = det.box;
  label.textContent = boxLabel(det);
  label.dataset.class = det.class_name;
  const colour = colourFor(det.class_name, det.class_id);
  label.style.backgroundColor = colour;
  label.style.color = labelTextColour(colour);
  const left = (100 * x1) / image.width;
  const right = (100 * (image.width - x2)) / image.width;
  label.style.left = left > 70 ? "auto" : `${left}%`;
  label.style.right = left > 70 ? `${Math.max(0, right)}%` : "auto";
  label.style.top = `${(100 * y1) / image.height}%`;
  label.classList.toggle("inside", y1 / image.height < 0.08);   // no room above: inside the box
  label.hidden = false;
}

// Like serving/annotate.py: box outline, then a filled label "name 0.91" above it; the outline
// on a dark halo and in the page's colours.
export function drawBoxes(ctx, photo, width, height) {
  const scale = Math.max(width, height) / 1000;
  const thickness = Math.max(1, Math.round(2 * scale));
  const halo = thickness + 2 * Math.max(1, Math.round(1.5 * scale));
  const fontSize = Math.max(11, Math.round(16 * scale));
  ctx.font = `${fontSize}px sans-serif`;
  ctx.textBaseline = "top";
  for (let i = photo.visible - 1; i >= 0; i -= 1) {   // weakest first, strongest on top
    const det = photo.dets[i];
    const colour = colourFor(det.class_name, det.class_id);
    const { x1, y1, x2, y2 } = det.box;
    ctx.strokeStyle = HALO;
    ctx.lineWidth = halo;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.strokeStyle = colour;
    ctx.lineWidth = thickness;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = boxLabel(det);
    const textWidth = ctx.measureText(label).width;
    const boxHeight = fontSize + 4;
    const top = Math.max(y1 - boxHeight, 0);
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, textWidth + 6, boxHeight);
    ctx.fillStyle = labelTextColour(colour);
    ctx.fillText(label, x1 + 3, top + 2);
  }
}
