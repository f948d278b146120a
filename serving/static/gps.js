/* The position in a photo's EXIF GPS block. */

import { fillViewerInfo, viewing } from "./viewer.js";

// /v1/detect does not answer the position (only `weedscan batch` does, serving/exif_gps.py),
// so the page reads it from the file with the same rules: latitude and longitude from the
// GPS IFD (degrees, minutes, seconds and N/S, E/W), none when out of range or 0, 0 (what many
// cameras write without a fix). JPEG (APP1), TIFF, PNG (eXIf) and WebP (EXIF chunk).
export async function readGps(file) {
  try {
    const view = new DataView(await file.arrayBuffer());
    const tiff = exifStart(view);
    return tiff === null ? null : gpsFromTiff(view, tiff);
  } catch {
    return null;   // a short or odd header simply has no position
  }
}

function exifStart(v) {
  if (v.byteLength < 16) return null;
  if (v.getUint16(0) === 0xffd8) {                              // JPEG: the APP1 "Exif\0\0"
    let p = 2;
    while (p + 4 <= v.byteLength && v.getUint8(p) === 0xff) {
      const marker = v.getUint8(p + 1);
      if (marker === 0xda || marker === 0xd9) return null;      // image data: no EXIF before it
      const length = v.getUint16(p + 2);
      if (marker === 0xe1 && v.getUint32(p + 4) === 0x45786966 && v.getUint16(p + 8) === 0) return p + 10;
      p += 2 + length;
    }
    return null;
  }
  const order = v.getUint16(0);
  if (order === 0x4949 || order === 0x4d4d) return 0;            // TIFF
  if (v.getUint32(0) === 0x89504e47) {                            // PNG: the eXIf chunk
    for (let p = 8; p + 8 <= v.byteLength; p += 12 + v.getUint32(p)) {
      if (v.getUint32(p + 4) === 0x65584966) return p + 8;
    }
    return null;
  }
  if (v.getUint32(0) === 0x52494646 && v.getUint32(8) === 0x57454250) {   // WebP: "EXIF"
    for (let p = 12; p + 8 <= v.byteLength;) {
      const size = v.getUint32(p + 4, true);
      if (v.getUint32(p) === 0x45584946) {
        const start = p + 8;
        return v.getUint32(start) === 0x45786966 ? start + 6 : start;
      }
      p += 8 + size + (size & 1);
    }
  }
  return null;
}

function gpsFromTiff(v, base) {
  const little = v.getUint16(base) === 0x4949;
  const u16 = (at) => v.getUint16(base + at, little);
  const u32 = (at) => v.getUint32(base + at, little);
  if (u16(2) !== 42) return null;
  const entries = (ifd) => {
    const tags = new Map();
    const n = u16(ifd);
    for (let i = 0; i < n; i += 1) {
      const at = ifd + 2 + 12 * i;
      tags.set(u16(at), { type: u16(at + 2), count: u32(at + 4), at: at + 8 });
    }
    return tags;
  };
  const pointer = entries(u32(4)).get(0x8825);
  if (!pointer) return null;
  const gps = entries(u32(pointer.at));
  const ref = (tag) => {
    const entry = gps.get(tag);
    return entry && entry.type === 2 ? String.fromCharCode(v.getUint8(base + entry.at)).toUpperCase() : "";
  };
  const degrees = (tag, hemispheres, refTag) => {
    const entry = gps.get(tag);
    const hemisphere = ref(refTag);
    if (!entry || !hemisphere || !hemispheres.includes(hemisphere)) return null;
    if ((entry.type !== 5 && entry.type !== 10) || entry.count < 1 || entry.count > 3) return null;
    const data = u32(entry.at);
    let total = 0;
    for (let i = 0; i < entry.count; i += 1) {
      const num = entry.type === 5 ? u32(data + 8 * i) : v.getInt32(base + data + 8 * i, little);
      const den = entry.type === 5 ? u32(data + 8 * i + 4) : v.getInt32(base + data + 8 * i + 4, little);
      const value = num / den;
      if (!Number.isFinite(value) || value < 0) return null;
      total += value / 60 ** i;
    }
    return hemisphere === hemispheres[1] ? -total : total;
  };
  const lat = degrees(2, "NS", 1);
  const lon = degrees(4, "EW", 3);
  if (lat === null || lon === null || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  if (lat === 0 && lon === 0) return null;
  return { lat, lon };
}

export function gpsText(fix) {
  const part = (value, plus, minus) => `${Math.abs(value).toFixed(6)}°\u00a0${value < 0 ? minus : plus}`;
  return `Taken at ${part(fix.lat, "N", "S")}, ${part(fix.lon, "E", "W")} (GPS in the photo)`;
}

export function showGps(photo, fix) {
  if (!fix || photo.removed) return;
  photo.gps = fix;
  photo.gpsText.textContent = gpsText(fix);
  photo.gpsText.hidden = false;
  photo.card.dataset.lat = String(fix.lat);
  photo.card.dataset.lon = String(fix.lon);
  if (viewing === photo) fillViewerInfo(photo);
}
