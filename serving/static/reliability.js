/* A plain warning when the model's answer on a photo is unreliable, pointing to teaching it the
 * field. Judged from the answer alone, at the slider's threshold: when the photo has enough
 * plants to judge (MIN_VEGETATION of the coarse plant mask), the answer is unreliable if most of
 * those plant pixels lie in no box shown (the model does not recognise the plants here), or if no
 * box at all reaches MIN_STRONGEST (the model is unsure of everything it found).
 * benchmarks/bench_reliability.py measures how well this separates fields a model was taught from
 * fields it never saw, with the same figures and limits. */

import { boxRaster } from "./cover.js";
import { make } from "./api.js";

export const MIN_VEGETATION = 0.02;
export const MAX_UNEXPLAINED = 0.3;
export const MIN_STRONGEST = 0.5;

/** {vegetation, unexplained, strongest, reasons} of a photo's answer at the boxes shown; null
 * in green-on-brown mode (no model) or without a plant mask. */
export function judge(photo) {
  if (photo.mode === "green" || !photo.answer || !photo.mask) return null;
  const { mask } = photo;
  const inside = boxRaster(photo.dets.slice(0, photo.visible).map((d) => d.box), mask, photo.answer.image);
  let outside = 0;
  for (let i = 0; i < inside.length; i += 1) if (mask.pixels[i] && !inside[i]) outside += 1;
  const vegetation = mask.plants / mask.pixels.length;
  const unexplained = mask.plants ? outside / mask.plants : 0;
  const strongest = photo.dets.length ? photo.dets[0].confidence : 0;
  const reasons = [];
  if (vegetation >= MIN_VEGETATION) {
    if (unexplained > MAX_UNEXPLAINED) {
      reasons.push(`${Math.round(unexplained * 100)}\u00a0% of the plants in this photo are in no box`);
    }
    if (strongest < MIN_STRONGEST) {
      reasons.push(strongest > 0
        ? `no box is surer than ${strongest.toFixed(2)}`
        : "the model found nothing among the plants");
    }
  }
  return { vegetation, unexplained, strongest, reasons };
}

/** The warning on the photo's card (the large view copies it). */
export function showJudgement(photo) {
  const judgement = judge(photo);
  photo.judgement = judgement;
  const card = photo.card.dataset;
  const unreliable = Boolean(judgement && judgement.reasons.length);
  card.unreliable = String(unreliable);
  if (judgement) {
    card.vegetation = judgement.vegetation.toFixed(6);
    card.unexplained = judgement.unexplained.toFixed(6);
    card.strongest = String(judgement.strongest);
  }
  photo.warningText.hidden = !unreliable;
  if (!unreliable) {
    photo.warningText.replaceChildren();
    return;
  }
  const why = judgement.reasons.join("; ");
  photo.warningText.replaceChildren(
    make("strong", { textContent: "This answer may be wrong: " }),
    `${why.charAt(0).toUpperCase()}${why.slice(1)}. The model may not know this field. Teach it: `
      + "open the photo large, choose Correct the boxes, save it to a field dataset, then ",
    make("a", { href: "#fields", textContent: "teach weedscan this field" }),
    ".");
}
