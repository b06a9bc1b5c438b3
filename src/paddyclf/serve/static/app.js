// paddyclf: plain JavaScript modules over server-rendered pages (the forms also work without them).
//
// Diagnose: when the browser can run the served model (ONNX Runtime Web, js/model.js), each photo is
// diagnosed on the phone, shown at once, kept in IndexedDB and sent to the server's history when it
// can be reached (js/outbox.js), so the page works in a field without signal once it has been
// opened. A service worker (/sw.js) keeps the page, the scripts, the runtime and the model. Where
// the model cannot load (an old browser, a server without a browser model), each photo is uploaded
// and the server's card is shown, as the page did before.
import { _ } from "./js/messages.js";
import { BrowserModel, combineVisit } from "./js/model.js";
import * as outbox from "./js/outbox.js";
import { markRefused, markSynced, markUnkept, photoCard, topK, visitCard } from "./js/render.js";

const REPORTED_CLASSES = 50; // the most classes a sync may report (the server's limit)

const root = document.documentElement;
root.classList.add("js");

// ------------------------------------------------------------------ the engine: this phone or the server

const SERVICE_WORKER_WAIT_MS = 10000;
// a photo chosen while the model is still loading (a first visit on a slow link) waits this long,
// then goes to the server rather than wait for the download
const ENGINE_WAIT_MS = 3000;
let model = null; // a BrowserModel once loaded

function within(promise, ms, fallback) {
  return Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(fallback), ms))]);
}

// Register the service worker; resolves to whether it controls this page (so that it keeps what the
// page loads next), within SERVICE_WORKER_WAIT_MS: a failed install never holds the page up.
async function serviceWorkerReady() {
  if (!("serviceWorker" in navigator) || !root.dataset.serviceWorker) return false;
  try {
    await navigator.serviceWorker.register(root.dataset.serviceWorker, { scope: "/" });
    if (!navigator.serviceWorker.controller) {
      // the first visit: wait until the worker controls this page, so that the runtime and the
      // model are fetched once, through it, into its cache (not once by the page and once by it)
      await within(
        new Promise((resolve) => navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true })),
        SERVICE_WORKER_WAIT_MS,
      );
    }
    return Boolean(navigator.serviceWorker.controller);
  } catch (error) {
    console.warn("paddyclf: no service worker, the page will not open offline:", error);
    return false;
  }
}

function showEngine(text, state) {
  root.dataset.engine = state;
  const note = document.getElementById("engine");
  if (note) note.textContent = text;
}

async function startEngine() {
  if (!root.dataset.browserModel) { // this server's model does not run in browsers: upload at once
    showEngine(_("Photos are diagnosed by the server."), "server");
    serviceWorkerReady().then((offline) => { root.dataset.offline = offline ? "ready" : "no"; });
    return;
  }
  const offline = await serviceWorkerReady();
  root.dataset.offline = offline ? "ready" : "no";
  try {
    model = await BrowserModel.load(self.crossOriginIsolated ? Number(root.dataset.threads || 1) : 1);
    showEngine(offline ? _("Photos are diagnosed on this device, also without signal.") : _("Photos are diagnosed on this device."), "browser");
  } catch (error) {
    console.warn("paddyclf: the browser model did not load; the server diagnoses:", error);
    showEngine(_("Photos are diagnosed by the server."), "server");
  }
}

// ------------------------------------------------------------------ sending what the phone diagnosed

const cardsByKey = new Map(); // outbox key -> its card on this page
const visitIds = new Map(); // a visit's id on this phone -> its id on the server, once synced
let syncTimer = null;
let syncDelay = 0;
let syncing = null;

function showOutbox(counts) {
  const note = document.getElementById("outbox");
  if (!note) return;
  const waiting = counts.waiting;
  note.hidden = waiting === 0 && counts.refused === 0;
  note.textContent =
    (waiting === 1 ? _("One diagnosis waits to be sent to the server.") : waiting ? _("%(count)s diagnoses wait to be sent to the server.", { count: waiting }) : "") +
    (counts.refused ? " " + _("%(count)s were refused by the server.", { count: counts.refused }) : "");
}

let syncAgain = false; // a diagnosis kept while a sync ran: send it when that sync ends

async function syncNow() {
  if (syncing) {
    syncAgain = true;
    return syncing;
  }
  syncAgain = false;
  clearTimeout(syncTimer);
  syncing = outbox
    .sync(
      (item, record) => {
        const card = cardsByKey.get(item.key);
        if (card) markSynced(card, record);
        cardsByKey.delete(item.key);
        if (item.visit && record.visit_id) {
          visitIds.set(item.visit, record.visit_id); // the server's number of this phone's visit
          for (const answer of document.querySelectorAll(`#visit .card[data-device-visit="${CSS.escape(item.visit)}"]`)) {
            answer.dataset.visit = record.visit_id;
          }
        }
      },
      (item, reason) => {
        const card = cardsByKey.get(item.key);
        if (card) markRefused(card, reason);
      },
    )
    .then((counts) => {
      showOutbox(counts);
      root.dataset.outbox = String(counts.waiting);
      if (counts.waiting) {
        syncDelay = Math.min(60000, Math.max(5000, syncDelay * 2)); // the server is out of reach: later
        syncTimer = setTimeout(syncNow, syncDelay);
      } else {
        syncDelay = 0;
      }
      return counts;
    })
    .catch((error) => {
      console.warn("paddyclf: sync failed:", error);
      syncDelay = Math.min(60000, Math.max(5000, syncDelay * 2));
      syncTimer = setTimeout(syncNow, syncDelay);
    })
    .finally(() => {
      syncing = null;
      if (syncAgain) syncNow();
    });
  return syncing;
}

// ------------------------------------------------------------------ diagnose

function placeholder(file) {
  const pending = document.createElement("article");
  pending.className = "card pending";
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = _("Diagnosing %(name)s …", { name: file.name });
  pending.appendChild(body);
  return pending;
}

function failed(pending, file, error) {
  pending.className = "card error";
  pending.firstChild.textContent = _("%(name)s: not diagnosed.", { name: file.name }) + " " + error.message;
}

// On the server: upload the photo and show the card it renders. A visit (several leaves of one
// field): the first photo starts it, the others join it, and the visit's answer replaces the last.
async function diagnoseOnServer(file, pending, visit) {
  const form = new FormData();
  form.append("files", file, file.name);
  if (visit) form.append("visit", visit.id || "new");
  const response = await fetch("/", { method: "POST", body: form, headers: { Accept: "text/html" } });
  const text = await response.text();
  const page = new DOMParser().parseFromString(text, "text/html");
  const answer = page.querySelector("#visit > .card");
  if (visit && answer) {
    visit.id = answer.dataset.visit;
    document.getElementById("visit").replaceChildren(document.adoptNode(answer));
  }
  const cards = page.querySelectorAll("#results > .card");
  if (cards.length === 0) {
    let reason = _("the server answered %(status)s", { status: response.status });
    try { reason = JSON.parse(text).error || reason; } catch (ignored) { /* not JSON */ }
    throw new Error(reason);
  }
  pending.replaceWith(...Array.from(cards, (card) => document.adoptNode(card)));
}

function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// On this phone: decode, resize, run, the verdict and its card; then keep it for the server.
// Resolves once the card is on the page; `kept` resolves once the photo is in IndexedDB.
async function diagnoseHere(file, pending, visit) {
  const diagnosedAt = new Date();
  const result = await model.diagnose(file);
  const drawing = performance.now();
  const card = photoCard(
    { name: file.name, photoUrl: URL.createObjectURL(file), diagnosedAt, ...result },
    model.classes,
  );
  pending.replaceWith(card);
  result.milliseconds.card = performance.now() - drawing;
  if (visit) {
    visit.photos.push(result);
    const answer = combineVisit(visit.photos, model.trust.unsure_below || 0);
    const shown = visitCard({ ...answer, classes: model.classes });
    shown.dataset.deviceVisit = visit.deviceId;
    if (visitIds.has(visit.deviceId)) shown.dataset.visit = visitIds.get(visit.deviceId);
    document.getElementById("visit").replaceChildren(shown);
  }
  const top_k = topK(result.probabilities, model.classes, REPORTED_CLASSES); // best first, as the server's
  const kept = outbox
    .keep({
      photo: file,
      name: file.name,
      status: result.status,
      top_k,
      model_sha256: model.sha256,
      diagnosed_at: diagnosedAt.toISOString(),
      visit: visit ? visit.deviceId : null,
    })
    .then((key) => { cardsByKey.set(key, card); return key; });
  return { card, result, kept };
}

async function diagnose(file, pending, visit) {
  try {
    if (model) {
      let shown;
      try {
        shown = await diagnoseHere(file, pending, visit);
      } catch (error) {
        if (!navigator.onLine) throw error; // e.g. a HEIC photo this browser cannot decode
        console.warn("paddyclf: diagnosing on the server instead:", error);
        if (visit) visit.id = null;
        await diagnoseOnServer(file, pending, visit);
        return;
      }
      try {
        await shown.kept;
        outbox.keepForGood();
        syncNow();
      } catch (error) { // the phone's storage refused it (full, or private browsing): say so on the card
        markUnkept(shown.card, error.message || String(error));
      }
      return;
    }
    await diagnoseOnServer(file, pending, visit);
  } catch (error) {
    failed(pending, file, error);
  }
}

function setUpDiagnose(engine) {
  const input = document.getElementById("photo-input");
  const zone = document.getElementById("drop-zone");
  const results = document.getElementById("results");
  if (!input || !zone || !results) return;
  const toggle = document.getElementById("visit-toggle");
  let visit = null; // the visit being built while the box stays ticked
  toggle?.addEventListener("change", () => { visit = null; });
  const send = async (files) => {
    const chosen = Array.from(files);
    const pendings = chosen.map(placeholder);
    results.prepend(...pendings);
    await within(engine, ENGINE_WAIT_MS); // then the server, if the model is not there yet
    if (toggle?.checked) visit = visit || { id: null, deviceId: randomId(), photos: [] };
    else visit = null;
    if (!visit && !model) {
      chosen.forEach((file, i) => diagnose(file, pendings[i], null)); // the server batches them
      return;
    }
    // one after another (measured: on 2 cores, decoding the next photo while the model ran did not pay)
    for (const [i, file] of chosen.entries()) await diagnose(file, pendings[i], visit);
  };
  input.addEventListener("change", () => { send(input.files); input.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => { event.preventDefault(); send(event.dataTransfer.files); });
}

// Grad-CAM: swap the thumbnail for the overlay and back.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".toggle-gradcam");
  if (!button) return;
  const img = button.closest(".card").querySelector("img");
  const showing = img.getAttribute("src") === img.dataset.gradcam;
  img.src = showing ? img.dataset.photo : img.dataset.gradcam;
  button.textContent = showing ? _("Show where the model looked") : _("Show the photo");
});

// Review: the token stays in this tab (sessionStorage) and goes as a bearer header.
function setUpReview() {
  const tokenInput = document.getElementById("review-token");
  if (!tokenInput) return;
  tokenInput.value = sessionStorage.getItem("paddyclf-review-token") || "";
  tokenInput.addEventListener("input", () => sessionStorage.setItem("paddyclf-review-token", tokenInput.value));
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.review");
    if (!form) return;
    event.preventDefault();
    const message = form.querySelector(".review-message");
    const label = form.querySelector("select").value;
    message.className = "review-message";
    message.textContent = _("saving …");
    try {
      const response = await fetch("/api/v1/diagnoses/" + form.dataset.id + "/review", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + tokenInput.value },
        body: JSON.stringify({ label }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || _("error %(status)s", { status: response.status }));
      const shown = answer.reviewed_name || answer.reviewed_label;
      form.closest(".card").querySelector(".review-state").textContent = _("reviewed: %(label)s", { label: shown });
      message.textContent = _("saved");
    } catch (error) {
      message.className = "review-message failed";
      message.textContent = error.message;
    }
  });
}

const engine = document.getElementById("photo-input") ? startEngine() : serviceWorkerReady();
setUpDiagnose(engine);
setUpReview();
window.addEventListener("online", syncNow);
if ("indexedDB" in window) syncNow();

// for the benchmark and the tests (`paddyclf benchmark browser`): the loaded model and the steps
window.paddyclf = { engine, model: () => model, diagnoseHere, placeholder, syncNow };
