// paddyclf's service worker: the diagnose page opens, and diagnoses, without a network.
//
// The server serves this file at /sw.js after a few lines that name what to keep:
//   PADDYCLF_RELEASE, PADDYCLF_ASSETS: the page's scripts, styles and icons, and a hash of them all;
//   PADDYCLF_RUNTIME, PADDYCLF_RUNTIME_ASSETS: ONNX Runtime Web's files, and a hash of its version;
//   PADDYCLF_MODEL: whether the page runs the model in the browser (then the model is kept too).
// Three caches, so that a new paddyclf does not make phones download the runtime or the model again:
//   "paddyclf-shell-<release>": the diagnose page (/) and the page's files;
//   "paddyclf-runtime-<runtime>": ONNX Runtime Web (14 MB; only a new runtime version replaces it);
//   "paddyclf-model": /browser/model.json and the /browser/model.onnx?sha256=... it names.
// Every download bypasses the browser's HTTP cache, so a release never keeps a previous file.
// Then:
//   - the diagnose page: the network first (a fresh page when online), the kept copy when the
//     server does not answer within a few seconds; other pages: the network only;
//   - /browser/model.json: the network first; it is kept only once the model it names is kept,
//     so an interrupted download never leaves the phone with a description of a model it lacks;
//   - /static/ and /browser/model.onnx?sha256=...: the kept copy first (a model's URL names its
//     hash: a new model is a new URL; the old one is dropped once the new one is kept);
//   - everything else (the API, photos, uploads): the network, as if there were no worker.
/* global PADDYCLF_RELEASE, PADDYCLF_ASSETS, PADDYCLF_RUNTIME, PADDYCLF_RUNTIME_ASSETS, PADDYCLF_MODEL */
"use strict";
const SHELL = "paddyclf-shell-" + PADDYCLF_RELEASE;
const RUNTIME = "paddyclf-runtime-" + PADDYCLF_RUNTIME;
const MODEL = "paddyclf-model";
const NETWORK_TIMEOUT_MS = 4000;

function fresh(url) {
  return new Request(url, { cache: "reload" }); // past the HTTP cache: this release's file
}

function isModelFile(url) {
  return new URL(url, self.location.origin).pathname === "/browser/model.onnx";
}

async function keepAll(cacheName, urls) {
  const cache = await caches.open(cacheName);
  const missing = [];
  for (const url of urls) if (!(await cache.match(url))) missing.push(url);
  await cache.addAll(missing.map(fresh));
}

// Keep the model file, then its description; drop the models no description names any more
async function keepModel(metadata, response) {
  const cache = await caches.open(MODEL);
  const url = `/browser/model.onnx?sha256=${metadata.sha256}`;
  if (!(await cache.match(url))) await cache.add(fresh(url));
  await cache.put("/browser/model.json", response);
  for (const old of await cache.keys()) {
    if (isModelFile(old.url) && !old.url.endsWith(metadata.sha256)) await cache.delete(old);
  }
}

async function fetchAndKeepModel() {
  const response = await fetch(fresh("/browser/model.json"));
  if (!response.ok) return; // this server's model does not run in browsers
  await keepModel(await response.clone().json(), response);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      await keepAll(SHELL, ["/", ...PADDYCLF_ASSETS]);
      await keepAll(RUNTIME, PADDYCLF_RUNTIME_ASSETS);
      if (PADDYCLF_MODEL) {
        // the page can also fetch (and keep) the model itself later: its failure here is no failure
        await fetchAndKeepModel().catch((error) => console.warn("paddyclf: the model is not kept yet:", error));
      }
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("paddyclf-") && ![SHELL, RUNTIME, MODEL].includes(name)) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

async function fromNetwork(request) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_TIMEOUT_MS);
  try {
    return await fetch(request, { signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

function keepLater(event, work) {
  event.waitUntil(work.catch((error) => console.warn("paddyclf: not kept:", error))); // a full disk never fails the page
}

async function diagnosePage(event) {
  try {
    const response = await fromNetwork(event.request);
    if (response.ok) keepLater(event, caches.open(SHELL).then((cache) => cache.put("/", response.clone())));
    return response;
  } catch (offline) {
    const kept = await caches.match("/", { cacheName: SHELL, ignoreVary: true });
    if (kept) return kept;
    throw offline;
  }
}

async function modelDescription(event) {
  try {
    const response = await fromNetwork(fresh("/browser/model.json"));
    if (response.ok) {
      const copy = response.clone();
      keepLater(event, copy.json().then((metadata) => keepModel(metadata, response.clone())));
    }
    return response;
  } catch (offline) {
    const kept = await caches.match("/browser/model.json", { cacheName: MODEL });
    if (kept) return kept;
    throw offline;
  }
}

async function keptFirst(event, cacheName) {
  const kept = await caches.match(event.request, { cacheName, ignoreVary: true });
  if (kept) return kept;
  const response = await fetch(event.request);
  if (response.ok) {
    keepLater(event, caches.open(cacheName).then((cache) => cache.put(event.request, response.clone())));
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    if (url.pathname === "/") event.respondWith(diagnosePage(event));
  } else if (url.pathname === "/browser/model.json") {
    event.respondWith(modelDescription(event));
  } else if (url.pathname === "/browser/model.onnx") {
    event.respondWith(keptFirst(event, MODEL));
  } else if (url.pathname.startsWith("/static/vendor/")) {
    event.respondWith(keptFirst(event, RUNTIME));
  } else if (url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest") {
    event.respondWith(keptFirst(event, SHELL));
  }
});
