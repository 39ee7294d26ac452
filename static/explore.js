// explore.py's page. One state S (step, chosen layer, channel and node); show() draws every view from it.
const $ = id => document.getElementById(id), S = {i: 0, layer: null, channel: null, node: null, timer: null};
let D, A, IMG, T, HEAT;  // the data, the activation maps (bytes), the overlay images, the steps' fields, the map's figure
async function unpack(id) {  // base64 of deflated bytes -> ArrayBuffer
  const bytes = Uint8Array.from(atob($(id).textContent), c => c.charCodeAt(0));
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
}
function map(layer, channel, i) {  // a channel's activation map at step i (rows of values) and its colour range
  if (layer === D.keyed) { const z = T.hidden[i][channel], lo = z && Math.min(...z.flat()), hi = z && Math.max(...z.flat()); return z && {z, zmin: lo, zmax: hi > lo ? hi : lo + 1e-9}; }
  const m = D.maps[layer], n = m.n, at = i * D.bytes_per_step + m.offset + channel * n * n, k = m.scale[i][channel] / 255;
  return {z: Array.from({length: n}, (_, r) => Array.from(A.subarray(at + r * n, at + r * n + n), q => q * k)), zmin: 0, zmax: m.max[channel]};
}
const nodes = () => T.tree[S.i];  // rows: layer, channel, y, x, relevance, parent, strength, cx, cy, box y0 x0 y1 x1
const layer = r => D.layers[r[0]], height = r => (D.layers.length - 1 - r[0]) * D.z_step;
const chan = (l, c) => l === "gradcam" ? `of ${D.action_names[c]}` : `ch ${c}`;  // a Grad-CAM root's channel: its action
const nodeName = r => `${layer(r)} ${chan(layer(r), r[1])} at (${r[2]}, ${r[3]}), relevance ${r[4].toPrecision(3)}`;
const mine = r => layer(r) === S.layer && r[1] === S.channel;
function show(i) {
  S.i = Math.max(0, Math.min(T.t.length - 1, i)); $("slider").value = S.i;
  const t = T.t[S.i], names = D.action_names, overlay = $("overlay").value;
  $("frame").src = IMG[overlay][S.i]; $("legend").textContent = D.overlays.find(o => o[0] === overlay)[2];
  $("stats").textContent = `step ${t}   score ${T.score[S.i]}   ${D.value_name} ${T.value[S.i].toFixed(3)}   action ${names[T.action[S.i]]}` + (T.forced[S.i] ? " (FIRE after a lost life)" : "");
  const colour = names.map((_, a) => a === T.action[S.i] ? D.taken : D.bar), q = D.q_values && T.q[S.i];
  const lo = q && Math.min(...q), hi = q && Math.max(...q, lo + 1e-6);  // a DQN's Q-values: bars from the lowest to the highest
  Plotly.restyle("decision", q ? {x: [q.map(v => v - lo)], base: [q.map(() => lo)], y: [names.map((n, a) => `${n} ${q[a].toFixed(3)}`)], "marker.color": [colour]}
    : {x: [T.probs[S.i]], "marker.color": [colour]}, [0]);
  Plotly.relayout("decision", {"shapes[0].x0": t, "shapes[0].x1": t, "shapes[1].x0": t, "shapes[1].x1": t, ...(q ? {"xaxis.range": [lo, hi]} : {})});
  if (S.node) { const key = S.node.slice(0, 4).join(); S.node = nodes().find(r => r.slice(0, 4).join() === key) || null; }  // the same unit, if in this tree
  if (S.layer === "gradcam") S.channel = +Object.keys(T.hidden[S.i])[0];  // Grad-CAM of the action this step explains
  $("node").innerHTML = `<option value=-1>${nodes().length ? "(none)" : "(no tree at this step)"}</option>` + nodes().map((r, k) => `<option value=${k}>${"\u00a0\u00a0".repeat(r[0])}${nodeName(r)}</option>`).join("");
  $("node").value = S.node ? nodes().indexOf(S.node) : -1;
  $("layer").value = S.layer ?? "";
  const list = S.layer === D.keyed ? Object.keys(T.hidden[S.i]) : S.layer ? [...Array(D.maps[S.layer].channels).keys()] : [];
  $("channel").innerHTML = list.map(c => `<option value=${c}>${S.layer === "gradcam" ? D.action_names[c] : c}</option>`).join(""); $("channel").value = S.channel;
  const box = (r, w) => `<rect x=${r[10]} y=${r[9]} width=${r[12] - r[10]} height=${r[11] - r[9]} fill=none stroke="${D.colours[layer(r)]}" stroke-width=${w} vector-effect=non-scaling-stroke />`;
  $("boxes").innerHTML = nodes().filter(r => mine(r) && r !== S.node).map(r => box(r, 1.5)).join("") + (S.node ? box(S.node, 4) : "");
  const m = S.layer && map(S.layer, S.channel, S.i);
  const title = !S.layer ? "choose a node (list or 3D view) or a channel: its activation map" : !m ? `${S.layer} ${chan(S.layer, S.channel)}: not in this step's tree (only those ${D.keyed} channels are kept)`
    : `${S.layer} ${chan(S.layer, S.channel)}, step ${t}` + (S.layer === D.keyed ? "" : " (colours: 0 to its game maximum)");
  const unit = S.node ? [{type: "rect", x0: S.node[3] - 0.5, x1: S.node[3] + 0.5, y0: S.node[2] - 0.5, y1: S.node[2] + 0.5, line: {color: "white", width: 2}}] : [];
  const heat = structuredClone(HEAT), axis = a => ({...heat.layout[a], visible: !!m});  // a fresh layout: ranges fit the map
  Plotly.react("activation", [{...heat.data[0], z: m ? m.z : [[0]], zmin: m ? m.zmin : 0, zmax: m ? m.zmax : 1, visible: !!m}],
    {...heat.layout, title: {text: title, font: {size: 13}}, shapes: unit, xaxis: axis("xaxis"), yaxis: axis("yaxis")});
  draw3d();
}
function draw3d() {  // the step's floor and tree; the chosen channel's nodes with their ancestors and descendants; the chosen node
  const rows = nodes(), fig = D.figures.tree3d, data = fig.data.map(trace => ({...trace})), n = data.length;
  const lines = () => ({x: [], y: [], z: [], c: []}), edges = [lines(), lines(), lines()], path = lines();
  const up = rows.map(mine), down = rows.map(mine);
  for (let k = rows.length - 1; k >= 0; k--) if (up[k] && rows[k][5] >= 0) up[rows[k][5]] = true;
  rows.forEach((r, k) => { if (r[5] >= 0 && down[r[5]]) down[k] = true; });  // parents come before their children
  rows.forEach((r, k) => { const p = rows[r[5]]; if (!p) return;
    for (const e of [edges[Math.min(2, Math.floor(r[6] * 3))]].concat((up[k] || down[k]) && (up[r[5]] || down[r[5]]) ? [path] : [])) {
      e.x.push(p[7], r[7], null); e.y.push(p[8], r[8], null); e.z.push(height(p), height(r), null); e.c.push(r[0], r[0], r[0]); } });
  data[0].surfacecolor = map("floor", 0, S.i).z;
  edges.forEach((e, k) => Object.assign(data[n - 6 + k], {x: e.x, y: e.y, z: e.z, line: {...data[n - 6 + k].line, color: e.c}}));
  Object.assign(data[n - 3], {x: rows.map(r => r[7]), y: rows.map(r => r[8]), z: rows.map(height), text: rows.map(nodeName),
    marker: {...data[n - 3].marker, color: rows.map(r => D.colours[layer(r)]), size: rows.map(r => 3 + 9 * r[6])}});
  Object.assign(data[n - 2], {x: path.x, y: path.y, z: path.z});
  const sel = S.node ? [S.node] : [];
  Object.assign(data[n - 1], {x: sel.map(r => r[7]), y: sel.map(r => r[8]), z: sel.map(height)});
  Plotly.react("tree3d", data, fig.layout);
}
function choose(layer, channel, node) { S.layer = layer || null; S.channel = channel; S.node = node; show(S.i); }
function play() {
  if (S.timer) { clearInterval(S.timer); S.timer = null; } else S.timer = setInterval(() => S.i + 1 < T.t.length ? show(S.i + 1) : play(), 1000 / 15);
  $("play").innerHTML = S.timer ? "&#10074;&#10074;" : "&#9654;";
}
(async () => {
  D = JSON.parse(new TextDecoder().decode(await unpack("data"))); A = new Uint8Array(await unpack("maps"));
  IMG = JSON.parse($("images").textContent); T = D.steps; HEAT = structuredClone(D.figures.activation);
  for (const [id, f] of Object.entries(D.figures)) await Plotly.newPlot(id, f.data, f.layout, {displaylogo: false, displayModeBar: id === "tree3d"});
  $("slider").max = T.t.length - 1; $("slider").oninput = e => show(+e.target.value); $("play").onclick = play; $("overlay").onchange = () => show(S.i);
  $("layer").innerHTML = "<option value=''>(none)</option>" + Object.keys(D.maps).filter(l => l !== "floor").concat([D.keyed]).map(l => `<option value=${l}>${l}</option>`).join("");
  $("layer").onchange = e => choose(e.target.value, e.target.value === D.keyed ? +Object.keys(T.hidden[S.i])[0] : 0, null);
  $("channel").onchange = e => choose(S.layer, +e.target.value, null);
  $("node").onchange = e => { const r = nodes()[+e.target.value]; r ? choose(layer(r), r[1], r) : choose(S.layer, S.channel, null); };
  $("tree3d").on("plotly_click", e => { const p = e.points[0], r = nodes()[p.pointNumber]; if (p.curveNumber === D.figures.tree3d.data.length - 3 && r) choose(layer(r), r[1], r); });
  $("decision").on("plotly_click", e => e.points[0].curveNumber > 0 && show(T.t.indexOf(e.points[0].x)));
  document.onkeydown = e => { if (["SELECT", "INPUT"].includes(e.target.tagName)) return;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") { show(S.i + (e.key === "ArrowRight" ? 1 : -1)); e.preventDefault(); }
    if (e.key === " ") { play(); e.preventDefault(); } };
  show(0); document.body.dataset.ready = "yes";
})();
