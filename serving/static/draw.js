// The drawing page: strokes drawn with mouse, pen or finger (pointer events) are
// simplified as the Quick, Draw! dataset was (scaled into a 0-255 box, then
// Ramer-Douglas-Peucker with epsilon 2) and sent to the server's TF Serving API
// after each stroke; the top guesses and the game's verdict are shown.
"use strict";
(function () {
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const $ = (id) => document.getElementById(id);
  const state = { model: null, classes: [], examples: new Set(), threshold: 0.5, target: null,
                  strokes: [], current: null, sequence: 0, animating: false };
  window.quickdraw = { predictions: 0, shown: 0, state: state };

  function status(text) { $("status").textContent = text || ""; }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
            (event.clientY - box.top) * canvas.height / box.height];
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 4; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#111";
    const all = state.current ? state.strokes.concat([state.current]) : state.strokes;
    for (const stroke of all) {
      ctx.beginPath();
      stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.1, stroke[0][1]);
      ctx.stroke();
    }
  }

  // Ramer-Douglas-Peucker on one stroke of [x, y] points.
  function rdp(points, epsilon) {
    if (points.length < 3) return points;
    const [ax, ay] = points[0], [bx, by] = points[points.length - 1];
    const dx = bx - ax, dy = by - ay, norm = Math.hypot(dx, dy);
    let worst = 0, index = 0;
    for (let i = 1; i < points.length - 1; i++) {
      const [px, py] = points[i];
      const d = norm ? Math.abs(dy * px - dx * py + bx * ay - by * ax) / norm
                     : Math.hypot(px - ax, py - ay);
      if (d > worst) { worst = d; index = i; }
    }
    if (worst <= epsilon) return [points[0], points[points.length - 1]];
    return rdp(points.slice(0, index + 1), epsilon).slice(0, -1)
      .concat(rdp(points.slice(index), epsilon));
  }

  // The strokes as an ndjson "drawing": top-left aligned, scaled to 0-255, simplified.
  function simplified() {
    const pts = state.strokes.flat();
    const minX = Math.min(...pts.map((p) => p[0])), minY = Math.min(...pts.map((p) => p[1]));
    const extent = Math.max(1, ...pts.map((p) => Math.max(p[0] - minX, p[1] - minY)));
    return state.strokes.map((stroke) => {
      const scaled = stroke.map(([x, y]) => [(x - minX) * 255 / extent, (y - minY) * 255 / extent]);
      const kept = rdp(scaled, 2.0).map(([x, y]) => [Math.round(x), Math.round(y)]);
      return [kept.map((p) => p[0]), kept.map((p) => p[1])];
    });
  }

  function showGuesses(prediction) {
    const list = $("guesses");
    list.innerHTML = "";
    prediction.classes.forEach((name, i) => {
      const item = document.createElement("li");
      if (name === state.target) item.className = "target";
      const pct = (100 * prediction.scores[i]).toFixed(1);
      item.innerHTML = "<span></span> <b></b><div class='bar'></div>";
      item.querySelector("span").textContent = name;
      item.querySelector("b").textContent = pct + "%";
      item.querySelector(".bar").style.width = Math.max(1, pct) + "%";
      list.appendChild(item);
    });
    const verdict = $("verdict");
    const score = (100 * prediction.target_score).toFixed(1);
    verdict.className = prediction.accepted ? "accepted" : "";
    verdict.textContent = prediction.accepted
      ? "Recognised! p(" + state.target + ") = " + score + "%"
      : "p(" + state.target + ") = " + score + "%, keep drawing";
  }

  async function predict() {
    if (!state.strokes.length) { $("guesses").innerHTML = ""; $("verdict").textContent = ""; return; }
    const sequence = ++state.sequence;
    const body = { instances: [{ drawing: simplified(), target: state.target }] };
    try {
      const response = await fetch("/v1/models/" + state.model + ":predict", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const answer = await response.json();
      if (sequence !== state.sequence) return;  // a later stroke's answer is on its way
      if (!response.ok) { status(answer.error || response.statusText); return; }
      status("");
      showGuesses(answer.predictions[0]);
      window.quickdraw.predictions += 1;
    } catch (e) {
      status("the server did not answer: " + e);
    }
  }

  function setTarget(name) {
    state.target = name;
    $("target").textContent = name;
    $("choose").value = name;
    $("show").disabled = !state.examples.has(name);
    clear();
  }

  function clear() {
    state.strokes = []; state.current = null; state.sequence++;
    $("guesses").innerHTML = ""; $("verdict").textContent = ""; status("");
    redraw();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (state.animating) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    state.current = [point(event)];
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.current) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of (events.length ? events : [event])) state.current.push(point(e));
    redraw();
  });
  function endStroke() {
    if (!state.current) return;
    state.strokes.push(state.current);
    state.current = null;
    redraw();
    predict();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  $("undo").addEventListener("click", () => { state.strokes.pop(); redraw(); predict(); });
  $("clear").addEventListener("click", clear);
  $("next").addEventListener("click", () => {
    setTarget(state.classes[Math.floor(Math.random() * state.classes.length)]);
  });
  $("choose").addEventListener("change", (event) => setTarget(event.target.value));

  // "Show me": a held-out drawing of the target, drawn stroke by stroke, guessed after each.
  $("show").addEventListener("click", async () => {
    const response = await fetch("/examples/" + encodeURIComponent(state.target));
    const example = await response.json();
    if (!response.ok) { status(example.error); return; }
    clear();
    state.animating = true;
    const scale = (canvas.width - 40) / 255;
    for (const [xs, ys] of example.drawing) {
      state.current = [];
      for (let i = 0; i < xs.length; i++) {
        state.current.push([20 + xs[i] * scale, 20 + ys[i] * scale]);
        redraw();
        await new Promise((done) => setTimeout(done, 15));
      }
      endStroke();
    }
    state.animating = false;
    window.quickdraw.shown += 1;
  });

  async function start() {
    const health = await (await fetch("/healthz")).json();
    const response = await fetch("/v1/models/" + encodeURIComponent(health.model) + "/metadata");
    const meta = await response.json();
    if (!response.ok) { status(meta.error); return; }
    state.model = meta.model_spec.name;
    state.classes = meta.quickdraw.classes;
    state.examples = new Set(meta.quickdraw.examples);
    state.threshold = meta.quickdraw.threshold;
    $("rule").textContent = "The drawing is accepted when the model gives the word more than " +
      Math.round(100 * state.threshold) + "% probability. " + state.classes.length +
      " words known." + (state.examples.size ? "" : " (No held-out drawings to show.)");
    const choose = $("choose");
    for (const c of state.classes) {
      const option = document.createElement("option");
      option.value = c; option.textContent = c; choose.appendChild(option);
    }
    setTarget(state.classes[Math.floor(Math.random() * state.classes.length)]);
  }
  start();
})();
