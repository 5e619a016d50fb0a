// What a learner sees, measured in the page (tests/browser/test_notebooks_in_chromium.py).
// readability(): every text in the outputs (HTML and inline SVG): its size in CSS pixels
// as drawn, its colour's contrast with the background behind it (WCAG), controls cut
// short and over-tall lines. svgImages(): the smallest text of each SVG diagram image.

const readability = () => {
  const parse = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(',').map(x => parseFloat(x)); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const blend = (top, under) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]); };
  const background = el => { const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let color = [255, 255, 255, 1]; for (const c of layers.reverse()) color = blend(c, color); return color; };
  const disabled = el => !!el.closest('[disabled], .mod-disabled, :disabled');
  const out = {small: [], contrast: [], cut: [], tall: [], svgTexts: 0, htmlTexts: 0};
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const outputs = panel.querySelectorAll('.jp-OutputArea-output');
  const seen = new Set();
  for (const area of outputs) {
    const walker = document.createTreeWalker(area, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = node.textContent.trim(); const el = node.parentElement;
      if (!text || !el || seen.has(el) || el.closest('svg')) continue; seen.add(el);
      const rect = el.getBoundingClientRect(); if (rect.width === 0 || rect.height === 0) continue;
      if (el.closest('.lm-mod-hidden, [hidden], details:not([open]) > :not(summary)')) continue;
      const style = getComputedStyle(el); if (style.visibility === 'hidden') continue;
      out.htmlTexts++;
      const size = parseFloat(style.fontSize);
      if (size < 10) out.small.push(`${size}px: ${text.slice(0, 60)}`);
      if (disabled(el)) continue;  // inactive controls are exempt (WCAG 1.4.3)
      const fg = parse(style.color), bg = background(el);
      if (fg) { const r = ratio(blend(fg, bg), bg);
        if (r < 4.5) out.contrast.push(`${r.toFixed(2)}:1 ${style.color} on rgb(${bg.slice(0, 3).map(Math.round)}): ${text.slice(0, 60)}`); }
      const lh = parseFloat(style.lineHeight);
      if (lh && lh > 2.0 * size && el.getClientRects().length > 1) out.tall.push(`line-height ${lh}px for ${size}px: ${text.slice(0, 60)}`);
    }
    // inline SVG (widgets): the font size times the scale it is drawn at
    for (const t of area.querySelectorAll('svg text')) {
      const text = t.textContent.trim(); if (!text) continue;
      const rect = t.getBoundingClientRect(); if (rect.width === 0) continue;
      out.svgTexts++;
      const size = parseFloat(getComputedStyle(t).fontSize) * (t.getScreenCTM() ? Math.hypot(t.getScreenCTM().a, t.getScreenCTM().b) : 1);
      if (size < 9.95) out.small.push(`svg ${size.toFixed(1)}px: ${text.slice(0, 60)}`);
      const fill = parse(getComputedStyle(t).fill);
      if (fill && !(fill[0] > 250 && fill[1] > 250 && fill[2] > 250)) {
        const r = ratio(fill, [255, 255, 255]); if (r < 4.5) out.contrast.push(`svg ${r.toFixed(2)}:1 ${getComputedStyle(t).fill}: ${text.slice(0, 60)}`); }
    }
    // buttons, tabs and dropdowns: never cut short
    for (const el of area.querySelectorAll('button, .lm-TabBar-tabLabel, .widget-label, select')) {
      if (el.getBoundingClientRect().width === 0) continue;
      let need = el.scrollWidth, have = el.clientWidth;
      if (el.tagName === 'SELECT') {
        const ctx = document.createElement('canvas').getContext('2d'); const st = getComputedStyle(el);
        ctx.font = `${st.fontSize} ${st.fontFamily}`;
        const chosen = el.options[el.selectedIndex]; need = chosen ? ctx.measureText(chosen.text).width + 28 : 0; }
      if (need > have + 1) out.cut.push(`${el.tagName.toLowerCase()} ${need}>${have}: ${(el.textContent || '').trim().slice(0, 50)}`);
    }
  }
  return out;
};

const svgImages = async () => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const found = [];
  for (const img of panel.querySelectorAll('.jp-OutputArea-output img[src^="data:image/svg+xml"]')) {
    const source = decodeURIComponent(img.src.slice(img.src.indexOf(',') + 1));
    const svg = new DOMParser().parseFromString(source, 'image/svg+xml').documentElement;
    const box = (svg.getAttribute('viewBox') || '').split(/[ ,]+/).map(Number);
    const scale = img.getBoundingClientRect().width / (box[2] || parseFloat(svg.getAttribute('width')));
    let smallest = Infinity, texts = 0, low = [];
    for (const t of svg.querySelectorAll('text')) {
      const style = t.getAttribute('style') || ''; const m = style.match(/font[^;]*?([\d.]+)px/);
      if (!m) continue; texts++;
      smallest = Math.min(smallest, parseFloat(m[1]) * scale);
    }
    found.push({texts, smallest, scale});
  }
  return found;
};
