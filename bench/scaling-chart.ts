/**
 * The scaling chart for RESULTS.md: the runner's wall time and its node process's peak RSS against
 * database size, as a dependency-free SVG (GitHub renders it inline like a PNG).
 */
import { writeFileSync } from 'node:fs';
import type { ScalingPoint } from './results-report.js';

const WIDTH = 640;
const HEIGHT = 360;
const MARGIN = { left: 60, right: 70, top: 30, bottom: 50 };

/** Writes the chart to `file` and returns true, or returns false when fewer than two sizes passed. */
export function drawScalingChart(points: readonly ScalingPoint[], file: string): boolean {
  const measured = points
    .filter((point) => point.result?.ok)
    .map((point) => ({
      gib: point.databaseBytes / 1024 ** 3,
      seconds: point.result!.wallSeconds,
      rssMib: (point.result!.memory.peakRssByCommand.node ?? 0) / 1024 ** 2,
    }))
    .sort((a, b) => a.gib - b.gib);
  if (measured.length < 2) return false;
  const maxGib = niceCeiling(Math.max(...measured.map((p) => p.gib)));
  const maxSeconds = niceCeiling(Math.max(...measured.map((p) => p.seconds)));
  const maxRss = niceCeiling(Math.max(150, ...measured.map((p) => p.rssMib)));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (gib: number): number => MARGIN.left + (gib / maxGib) * plotWidth;
  const pySeconds = (seconds: number): number => MARGIN.top + plotHeight - (seconds / maxSeconds) * plotHeight;
  const pyRss = (mib: number): number => MARGIN.top + plotHeight - (mib / maxRss) * plotHeight;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="14">Runner: wall time and peak RSS vs database size</text>`);
  for (let i = 0; i <= 4; i += 1) {
    const y = MARGIN.top + (plotHeight * i) / 4;
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${y + 4}" text-anchor="end" fill="#1f5fbf">${fmt((maxSeconds * (4 - i)) / 4)}</text>`);
    parts.push(`<text x="${WIDTH - MARGIN.right + 6}" y="${y + 4}" fill="#c0392b">${fmt((maxRss * (4 - i)) / 4)}</text>`);
    const gib = (maxGib * i) / 4;
    parts.push(`<text x="${px(gib)}" y="${HEIGHT - MARGIN.bottom + 18}" text-anchor="middle">${fmt(gib)}</text>`);
  }
  parts.push(`<text x="${WIDTH / 2}" y="${HEIGHT - 12}" text-anchor="middle">database size on disk (GiB)</text>`);
  parts.push(`<text x="16" y="${HEIGHT / 2}" transform="rotate(-90 16 ${HEIGHT / 2})" text-anchor="middle" fill="#1f5fbf">wall time (s)</text>`);
  parts.push(`<text x="${WIDTH - 16}" y="${HEIGHT / 2}" transform="rotate(90 ${WIDTH - 16} ${HEIGHT / 2})" text-anchor="middle" fill="#c0392b">node peak RSS (MiB)</text>`);
  parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${pyRss(150)}" y2="${pyRss(150)}" stroke="#c0392b" stroke-dasharray="4 4"/>`);
  parts.push(`<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="${measured.map((p) => `${px(p.gib)},${pySeconds(p.seconds)}`).join(' ')}"/>`);
  parts.push(`<polyline fill="none" stroke="#c0392b" stroke-width="2" points="${measured.map((p) => `${px(p.gib)},${pyRss(p.rssMib)}`).join(' ')}"/>`);
  for (const p of measured) {
    parts.push(`<circle cx="${px(p.gib)}" cy="${pySeconds(p.seconds)}" r="4" fill="#1f5fbf"/>`);
    parts.push(`<text x="${px(p.gib) + 6}" y="${pySeconds(p.seconds) - 6}" fill="#1f5fbf">${p.seconds.toFixed(1)} s</text>`);
    parts.push(`<circle cx="${px(p.gib)}" cy="${pyRss(p.rssMib)}" r="4" fill="#c0392b"/>`);
  }
  parts.push('</svg>');
  writeFileSync(file, `${parts.join('\n')}\n`);
  return true;
}

/** 1, 2, 2.5, 5 or 10 times a power of ten, at least `value`. */
function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 1 ? 2 : 1);
}
