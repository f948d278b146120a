/* Where a photo was taken: the server reads the EXIF GPS block (serving/exif_gps.py, as for
 * `weedscan batch`) and sends the fix in the answer's `gps`; the page shows it and exports it. */

/** "Taken at 33.865143° S, 151.209912° E (GPS in the photo)". */
export function gpsText(fix) {
  const part = (value, plus, minus) => `${Math.abs(value).toFixed(6)}°\u00a0${value < 0 ? minus : plus}`;
  return `Taken at ${part(fix.lat, "N", "S")}, ${part(fix.lon, "E", "W")} (GPS in the photo)`;
}

/** The answer's fix on the photo's card (hidden when the photo has none). */
export function showGps(photo) {
  const fix = photo.answer && photo.answer.gps;
  photo.gpsText.textContent = fix ? gpsText(fix) : "";
  photo.gpsText.hidden = !fix;
  if (fix) {
    photo.card.dataset.lat = String(fix.lat);
    photo.card.dataset.lon = String(fix.lon);
  } else {
    delete photo.card.dataset.lat;
    delete photo.card.dataset.lon;
  }
}
