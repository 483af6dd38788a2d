// A dependency-free SVG bar chart: panels of horizontal bars, each panel with its own scale.
import { fmtNum } from './table.js';

export interface Bar {
  label: string;
  value: number;
  color?: string;
  /** Shown right of the bar instead of the value. */
  text?: string;
  /** The individual samples behind the bar, drawn as small circles. */
  points?: number[];
}

export interface Panel {
  title: string;
  unit?: string;
  bars: Bar[];
  goal?: { value: number; label: string };
}

export interface Chart {
  title: string;
  subtitle?: string;
  notes?: string[];
  panels: Panel[];
}

export const esc = (s: unknown): string => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceStep(max: number, ticks = 5): number {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

export const COLORS = { blue: '#4e79a7', lightBlue: '#a0cbe8', orange: '#f28e2b', green: '#59a14f', red: '#e15759', grey: '#9c9c9c', teal: '#76b7b2' };

export function renderSvg(chart: Chart): string {
  const W = 820;
  const labelW = 210;
  const x0 = labelW + 10;
  const plotW = W - x0 - 110;
  const barH = 20;
  const gap = 8;
  const parts: string[] = [];
  let y = 28;
  parts.push(`<text x="16" y="${y}" class="title">${esc(chart.title)}</text>`);
  if (chart.subtitle) {
    y += 20;
    parts.push(`<text x="16" y="${y}" class="sub">${esc(chart.subtitle)}</text>`);
  }
  y += 16;
  for (const panel of chart.panels) {
    y += 26;
    parts.push(`<text x="16" y="${y}" class="panel">${esc(panel.title)}</text>`);
    y += panel.goal ? 30 : 14;
    const values = panel.bars.flatMap((b) => [b.value, ...(b.points ?? [])]).filter(Number.isFinite);
    const maxV = Math.max(...values, panel.goal?.value ?? 0, 1e-9) * 1.08;
    const step = niceStep(maxV);
    const top = Math.ceil(maxV / step) * step;
    const sx = (v: number) => x0 + (Math.max(0, v) / top) * plotW;
    const plotTop = y;
    const plotH = panel.bars.length * (barH + gap) + gap;
    // grid and axis labels
    for (let t = 0; t <= top + step / 1e6; t += step) {
      const gx = sx(t).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${plotTop}" x2="${gx}" y2="${plotTop + plotH}" class="grid"/>`);
      parts.push(`<text x="${gx}" y="${plotTop + plotH + 14}" class="tick">${esc(fmtTick(t))}</text>`);
    }
    parts.push(`<text x="${x0 + plotW}" y="${plotTop + plotH + 28}" class="unit">${esc(panel.unit ?? '')}</text>`);
    let by = plotTop + gap;
    for (const b of panel.bars) {
      const w = Number.isFinite(b.value) ? Math.max(1, sx(b.value) - x0) : 0;
      parts.push(`<text x="${labelW}" y="${by + barH / 2 + 4}" class="label">${esc(b.label)}</text>`);
      parts.push(`<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${b.color ?? COLORS.blue}"><title>${esc(`${b.label}: ${b.text ?? fmtNum(b.value)}`)}</title></rect>`);
      const right = Math.max(x0 + w, ...(b.points ?? []).map((v) => sx(v) + 3));
      for (const v of b.points ?? []) {
        parts.push(`<circle cx="${sx(v).toFixed(1)}" cy="${by + barH / 2}" r="3" class="point"><title>${esc(fmtNum(v))}</title></circle>`);
      }
      parts.push(`<text x="${(right + 6).toFixed(1)}" y="${by + barH / 2 + 4}" class="value">${esc(b.text ?? fmtNum(b.value))}</text>`);
      by += barH + gap;
    }
    if (panel.goal && Number.isFinite(panel.goal.value)) {
      const gx = sx(panel.goal.value).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${plotTop - 4}" x2="${gx}" y2="${plotTop + plotH}" class="goal"/>`);
      parts.push(`<text x="${gx}" y="${plotTop - 7}" class="goaltext">${esc(panel.goal.label)}</text>`);
    }
    parts.push(`<line x1="${x0}" y1="${plotTop}" x2="${x0}" y2="${plotTop + plotH}" class="axis"/>`);
    y = plotTop + plotH + 34;
  }
  for (const n of chart.notes ?? []) {
    // Wrap long notes at word boundaries (about 135 characters fit the width at this font size).
    const lines: string[] = [''];
    for (const w of String(n).split(' ')) {
      if (lines.at(-1) && `${lines.at(-1)} ${w}`.length > 135) lines.push(w);
      else lines[lines.length - 1] = lines.at(-1) ? `${lines.at(-1)} ${w}` : w;
    }
    lines.forEach((l, i) => {
      y += i === 0 ? 16 : 14;
      parts.push(`<text x="${i === 0 ? 16 : 26}" y="${y}" class="note">${esc(l)}</text>`);
    });
  }
  y += 16;
  const style = `
    text { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; fill: #222; }
    .title { font-size: 17px; font-weight: 600; }
    .sub { font-size: 11.5px; fill: #555; }
    .panel { font-size: 13.5px; font-weight: 600; }
    .label { font-size: 12px; text-anchor: end; }
    .value { font-size: 12px; }
    .tick { font-size: 10.5px; fill: #666; text-anchor: middle; }
    .unit { font-size: 10.5px; fill: #666; text-anchor: end; }
    .note { font-size: 11.5px; fill: #444; }
    .grid { stroke: #e4e4e4; stroke-width: 1; }
    .axis { stroke: #888; stroke-width: 1; }
    .point { fill: #ffffff; stroke: #222; stroke-width: 1.2; }
    .goal { stroke: ${COLORS.red}; stroke-width: 1.5; stroke-dasharray: 5 3; }
    .goaltext { font-size: 11px; fill: ${COLORS.red}; text-anchor: middle; }`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">
<style>${style}
</style>
<rect x="0" y="0" width="${W}" height="${y}" fill="#ffffff"/>
${parts.join('\n')}
</svg>
`;
}

function fmtTick(t: number): string {
  const s = Number(t.toPrecision(6));
  return Math.abs(s) >= 1000 ? s.toFixed(0) : String(s);
}
