/* The box editor of review mode, as people who label in CVAT or Label Studio expect it: click a
 * box to select it (click it again to switch crop <-> weed), drag it to move it, drag a corner to
 * resize it, drag on the photo (or press N first) to draw a new one, Delete to remove it, Ctrl+Z
 * and Ctrl+Shift+Z (or Ctrl+Y) to undo and redo. Pointer events: mouse, pen and touch alike.
 * Boxes are kept in pixels of the upright image, as the detect answer gives them. */

import { countsText, make } from "./api.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = { crop: "#ffffff", weed: "#e61ec8" };
const HALO = "#0d1a0d";
const CLASSES = ["crop", "weed"];
const MIN_SIDE = 2;      // image pixels: a smaller box is a slip, not a plant
const DRAG_START = 4;    // screen pixels a press must travel to become a drag
const HANDLE_PX = 14;    // corner handles, on screen
const CORNERS = ["nw", "ne", "sw", "se"];
export const HELP = "Click a box to select it, click it again to switch crop/weed. Drag on the photo "
  + "to draw a box (or N, then drag). Drag a box to move it, a corner to resize it. "
  + "Keys: C crop · W weed · Delete remove · Ctrl+Z undo · Ctrl+Shift+Z redo · arrows move · "
  + "Esc cancel.";

const round1 = (v) => Math.round(v * 10) / 10;
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function normal(label) {
  const name = label.class_name === "crop" ? "crop" : "weed";   // green mode's "plant" is a weed
  const { x1, y1, x2, y2 } = label.box;
  return { class_name: name, box: { x1: Math.min(x1, x2), y1: Math.min(y1, y2),
                                    x2: Math.max(x1, x2), y2: Math.max(y1, y2) } };
}

const copy = (boxes) => boxes.map((b) => ({ class_name: b.class_name, box: { ...b.box } }));

/** An editor on `figure` (the element that holds the photo, in its proportions). `keyTarget`
 * receives the keyboard shortcuts; `toolbar` gets the buttons, the help line and the status. */
export function createEditor({ figure, toolbar, keyTarget, width, height, labels, onChange }) {
  let boxes = labels.map(normal);
  let selected = -1;
  let drawMode = false;
  let newClass = "weed";
  let op = null;              // the pointer's gesture in progress
  let saved = JSON.stringify(labelsOf(boxes));
  const undoStack = [];
  const redoStack = [];

  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "overlay review-layer");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", "Boxes being reviewed");
  svg.setAttribute("tabindex", "-1");
  figure.append(svg);
  figure.classList.add("reviewing");

  const button = (text, key, action, label) => {
    const b = make("button", { type: "button", className: "button small", textContent: text });
    b.dataset.action = action;
    if (key) b.setAttribute("aria-keyshortcuts", key);
    if (label) b.setAttribute("aria-label", label);
    return b;
  };
  const tools = {
    draw: button("New box (N)", "N", "draw"),
    crop: button("Crop (C)", "C", "crop", "Crop: class of the selected or next box"),
    weed: button("Weed (W)", "W", "weed", "Weed: class of the selected or next box"),
    remove: button("Delete (Del)", "Delete", "delete", "Delete the selected box"),
    undo: button("Undo", "Control+Z", "undo"),
    redo: button("Redo", "Control+Shift+Z", "redo"),
  };
  const status = make("p", { className: "review-status", role: "status" });
  const help = make("p", { className: "hint review-help", textContent: HELP });
  const row = make("div", { className: "review-tools" }, ...Object.values(tools));
  toolbar.replaceChildren(row, status, help);
  row.addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.action;
    if (action === "draw") setDrawMode(!drawMode);
    else if (action === "crop" || action === "weed") setClass(action);
    else if (action === "delete") removeSelected();
    else if (action === "undo") undo();
    else if (action === "redo") redo();
  });

  function labelsOf(list) {
    return list.map((b) => ({ class_name: b.class_name, box: {
      x1: round1(b.box.x1), y1: round1(b.box.y1), x2: round1(b.box.x2), y2: round1(b.box.y2) } }));
  }

  function commit(change) {
    undoStack.push({ boxes: copy(boxes), selected });
    redoStack.length = 0;
    change();
    render();
    onChange?.();
  }

  function undo() {
    if (!undoStack.length) return;
    redoStack.push({ boxes: copy(boxes), selected });
    ({ boxes, selected } = undoStack.pop());
    render();
    onChange?.();
  }

  function redo() {
    if (!redoStack.length) return;
    undoStack.push({ boxes: copy(boxes), selected });
    ({ boxes, selected } = redoStack.pop());
    render();
    onChange?.();
  }

  function setClass(name) {
    newClass = name;
    if (selected >= 0 && boxes[selected].class_name !== name) {
      commit(() => { boxes[selected].class_name = name; });
    } else render();
  }

  function removeSelected() {
    if (selected < 0) return;
    commit(() => { boxes.splice(selected, 1); selected = -1; });
  }

  function setDrawMode(on) {
    drawMode = on;
    if (on) selected = -1;
    render();
  }

  function select(index) {
    if (index === selected) return;
    selected = index;
    render();
  }

  // ---- drawing the boxes -----------------------------------------------------------------
  function scale() {   // image pixels per screen pixel
    const rect = svg.getBoundingClientRect();
    return rect.width > 0 ? width / rect.width : 1;
  }

  function rectNode(cls, box, stroke) {
    const r = document.createElementNS(SVG_NS, "rect");
    r.setAttribute("class", cls);
    r.setAttribute("x", box.x1);
    r.setAttribute("y", box.y1);
    r.setAttribute("width", Math.max(0, box.x2 - box.x1));
    r.setAttribute("height", Math.max(0, box.y2 - box.y1));
    if (stroke) r.setAttribute("stroke", stroke);
    return r;
  }

  function render() {
    const hadFocus = svg.contains(document.activeElement);
    const groups = boxes.map((b, i) => {
      const g = document.createElementNS(SVG_NS, "g");
      g.setAttribute("class", i === selected ? "box selected" : "box");
      g.dataset.class = b.class_name;
      g.dataset.index = String(i);
      const r = labelsOf([b])[0].box;
      g.dataset.box = [r.x1, r.y1, r.x2, r.y2].join(",");   // what a save would send
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "img");
      const w = Math.round(b.box.x2 - b.box.x1);
      const h = Math.round(b.box.y2 - b.box.y1);
      g.setAttribute("aria-label",
                     `${b.class_name} box, ${w} by ${h} pixels${i === selected ? ", selected" : ""}`);
      g.append(rectNode("halo", b.box, HALO), rectNode("line", b.box, COLOURS[b.class_name]));
      return [g, (b.box.x2 - b.box.x1) * (b.box.y2 - b.box.y1)];
    });
    // the biggest first: a small box inside a big one stays on top, where the pointer reaches it
    const nodes = groups.sort((a, b) => b[1] - a[1]).map(([g]) => g);
    if (selected >= 0) {
      const { box } = boxes[selected];
      const side = HANDLE_PX * scale();
      const g = nodes.find((n) => n.dataset.index === String(selected));
      for (const corner of CORNERS) {
        const x = corner.includes("w") ? box.x1 : box.x2;
        const y = corner.includes("n") ? box.y1 : box.y2;
        const half = side / 2;
        const handle = rectNode("handle", { x1: x - half, y1: y - half, x2: x + half, y2: y + half });
        handle.dataset.handle = corner;
        g.append(handle);
      }
      nodes.push(nodes.splice(nodes.indexOf(g), 1)[0]);   // the selected box on top
    }
    if (op && op.kind === "draw" && op.active) {
      nodes.push(rectNode("draft", op.box, COLOURS[newClass]));
    }
    svg.replaceChildren(...nodes);
    svg.classList.toggle("drawing", drawMode);
    figure.dataset.reviewBoxes = String(boxes.length);
    if (hadFocus) {   // the focused box was redrawn: focus stays in the editor, on the same box
      (selected >= 0 ? svg.querySelector(`g[data-index="${selected}"]`) : svg)?.focus({ preventScroll: true });
    }
    const counts = { crop: 0, weed: 0 };
    for (const b of boxes) counts[b.class_name] += 1;
    const picked = selected >= 0 ? boxes[selected] : null;
    const doing = drawMode ? `Drag on the photo to draw a ${newClass} box.`
      : picked ? `Selected: a ${picked.class_name} box.` : "No box selected.";
    status.textContent = `${countsText(counts)}. ${doing}`;
    tools.crop.setAttribute("aria-pressed", String((picked ? picked.class_name : newClass) === "crop"));
    tools.weed.setAttribute("aria-pressed", String((picked ? picked.class_name : newClass) === "weed"));
    tools.draw.setAttribute("aria-pressed", String(drawMode));
    tools.remove.disabled = !picked;
    tools.undo.disabled = !undoStack.length;
    tools.redo.disabled = !redoStack.length;
  }

  // ---- the pointer: select, switch, move, resize, draw ------------------------------------
  function point(event) {
    const rect = svg.getBoundingClientRect();
    return { x: clamp(((event.clientX - rect.left) / rect.width) * width, 0, width),
             y: clamp(((event.clientY - rect.top) / rect.height) * height, 0, height) };
  }

  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || op) return;
    const start = point(event);
    const handle = event.target.closest("[data-handle]");
    const g = event.target.closest("g.box");
    const index = g ? Number(g.dataset.index) : -1;
    let kind = "draw";
    if (handle) kind = "resize";
    else if (index >= 0 && !drawMode) kind = "press";
    op = { kind, index, corner: handle?.dataset.handle, start, screen: [event.clientX, event.clientY],
           active: false, original: index >= 0 ? { ...boxes[index].box } : null, box: null };
    svg.setPointerCapture(event.pointerId);
    event.preventDefault();   // no text selection, no scrolling the dialog under a finger
  });

  svg.addEventListener("pointermove", (event) => {
    if (!op) return;
    if (!op.active) {
      if (Math.hypot(event.clientX - op.screen[0], event.clientY - op.screen[1]) < DRAG_START) return;
      op.active = true;
      if (op.kind === "press") {
        op.kind = "move";
        undoStack.push({ boxes: copy(boxes), selected });   // one undo step for the whole drag
        redoStack.length = 0;
        selected = op.index;
      } else if (op.kind === "resize") {
        undoStack.push({ boxes: copy(boxes), selected });
        redoStack.length = 0;
      }
    }
    const p = point(event);
    if (op.kind === "draw") {
      op.box = { x1: Math.min(op.start.x, p.x), y1: Math.min(op.start.y, p.y),
                 x2: Math.max(op.start.x, p.x), y2: Math.max(op.start.y, p.y) };
    } else if (op.kind === "move") {
      const o = op.original;
      const dx = clamp(p.x - op.start.x, -o.x1, width - o.x2);
      const dy = clamp(p.y - op.start.y, -o.y1, height - o.y2);
      boxes[op.index].box = { x1: o.x1 + dx, y1: o.y1 + dy, x2: o.x2 + dx, y2: o.y2 + dy };
    } else if (op.kind === "resize") {
      const o = op.original;
      const fixedX = op.corner.includes("w") ? o.x2 : o.x1;
      const fixedY = op.corner.includes("n") ? o.y2 : o.y1;
      boxes[selected].box = { x1: Math.min(fixedX, p.x), y1: Math.min(fixedY, p.y),
                              x2: Math.max(fixedX, p.x), y2: Math.max(fixedY, p.y) };
    }
    render();
  });

  function endGesture(event, cancelled) {
    if (!op) return;
    const done = op;
    op = null;
    if (svg.hasPointerCapture?.(event.pointerId)) svg.releasePointerCapture(event.pointerId);
    if (cancelled) {
      if (done.active && (done.kind === "move" || done.kind === "resize")) undo(), redoStack.pop();
      render();
      return;
    }
    if (!done.active) {                       // a click (a tap)
      if (done.kind === "press") {
        if (done.index === selected) setClass(boxes[done.index].class_name === "crop" ? "weed" : "crop");
        else select(done.index);
      } else if (done.kind === "draw" && !drawMode) select(-1);
      return;
    }
    if (done.kind === "draw") {
      const b = done.box;
      if (b && b.x2 - b.x1 >= MIN_SIDE && b.y2 - b.y1 >= MIN_SIDE) {
        commit(() => { boxes.push({ class_name: newClass, box: b }); selected = boxes.length - 1; });
        drawMode = false;
        render();
      } else render();
      return;
    }
    const b = boxes[selected]?.box;
    if (b && (b.x2 - b.x1 < MIN_SIDE || b.y2 - b.y1 < MIN_SIDE)) {   // resized to nothing
      undo();
      redoStack.pop();
      return;
    }
    render();
    onChange?.();
  }
  svg.addEventListener("pointerup", (event) => endGesture(event, false));
  svg.addEventListener("pointercancel", (event) => endGesture(event, true));
  svg.addEventListener("focusin", (event) => {
    const g = event.target.closest("g.box");
    if (g && !op) select(Number(g.dataset.index));
  });

  // ---- the keyboard ------------------------------------------------------------------------
  function onKey(event) {
    escapeTaken = false;
    const t = event.target;
    // the dialog's keys, also when a redrawn box took the focus with it (to the body)
    if (!keyTarget.open || !(keyTarget.contains(t) || t === document.body)) return;
    if (t.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    let handled = true;
    if (ctrl && key === "z") (event.shiftKey ? redo : undo)();
    else if (ctrl && key === "y") redo();
    else if (ctrl || event.altKey) handled = false;
    else if (key === "c" || key === "w") setClass(key === "c" ? "crop" : "weed");
    else if (key === "Delete" || key === "Backspace") handled = selected >= 0 && (removeSelected(), true);
    else if (key === "n") setDrawMode(!drawMode);
    else if (key === "Escape") {
      if (op) { op = null; render(); }
      else if (drawMode) setDrawMode(false);
      else if (selected >= 0) select(-1);
      else if (keyTarget.open && keyTarget.close) keyTarget.close();   // nothing to cancel: Esc closes
      else handled = false;
    } else if (key.startsWith("Arrow") && selected >= 0) {
      const step = event.shiftKey ? 10 : 1;
      const dx = key === "ArrowLeft" ? -step : key === "ArrowRight" ? step : 0;
      const dy = key === "ArrowUp" ? -step : key === "ArrowDown" ? step : 0;
      const o = boxes[selected].box;
      const mx = clamp(dx, -o.x1, width - o.x2);
      const my = clamp(dy, -o.y1, height - o.y2);
      commit(() => { boxes[selected].box = { x1: o.x1 + mx, y1: o.y1 + my, x2: o.x2 + mx, y2: o.y2 + my }; });
    } else handled = false;
    if (handled) {
      event.preventDefault();
      event.stopPropagation();
      escapeTaken = key === "Escape";
    }
  }
  let escapeTaken = false;
  // A <dialog> closes on Esc through its cancel event: not while Esc cancels something here.
  const onCancel = (event) => {
    if (escapeTaken || op || drawMode) event.preventDefault();
    escapeTaken = false;
  };
  document.addEventListener("keydown", onKey);
  keyTarget.addEventListener("cancel", onCancel);
  window.addEventListener("resize", render);
  render();

  return {
    labels: () => labelsOf(boxes),
    dirty: () => JSON.stringify(labelsOf(boxes)) !== saved,
    markSaved() { saved = JSON.stringify(labelsOf(boxes)); },
    destroy() {
      document.removeEventListener("keydown", onKey);
      keyTarget.removeEventListener("cancel", onCancel);
      window.removeEventListener("resize", render);
      svg.remove();
      figure.classList.remove("reviewing");
      delete figure.dataset.reviewBoxes;
      toolbar.replaceChildren();
    },
  };
}

export { CLASSES };
