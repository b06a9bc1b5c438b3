// Diagnoses made in the browser wait here (IndexedDB, with their photo) until the server has them.
//
// Each one is sent to POST /api/v1/sync with this phone's device id: the server keys it by
// (device id, sha256 of the photo), so a retry after a lost reply stores nothing twice. An item
// leaves the outbox only once the server has answered 200; a refusal (4xx) is kept, marked, and
// not retried; a network failure or a 5xx is retried later (every few seconds, at most a minute).
const DB_NAME = "paddyclf";
const STORE = "outbox";
const DEVICE_KEY = "paddyclf-device-id";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let database = null;
function open() {
  if (!database) {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key", autoIncrement: true });
    database = request(req);
  }
  return database;
}

async function transaction(mode, work) {
  const db = await open();
  const tx = db.transaction(STORE, mode);
  const result = await work(tx.objectStore(STORE));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
  return result;
}

// A random id this browser keeps (crypto.getRandomValues works on plain HTTP too, randomUUID does not)
export function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

// Keep a diagnosis until it is synced; resolves to its key once the photo is on the phone's disk
export function keep(item) {
  return transaction("readwrite", (store) => request(store.add(item)));
}

export function pending() {
  return transaction("readonly", (store) => request(store.getAll()));
}

function forget(key) {
  return transaction("readwrite", (store) => request(store.delete(key)));
}

function markRefused(item, reason) {
  return transaction("readwrite", (store) => request(store.put({ ...item, refused: reason })));
}

function form(item) {
  const body = new FormData();
  body.append("file", item.photo, item.name);
  body.append("device_id", deviceId());
  body.append("device_status", item.status);
  body.append("device_top_k", JSON.stringify(item.top_k));
  body.append("device_model_sha256", item.model_sha256);
  body.append("diagnosed_at", item.diagnosed_at);
  if (item.visit) body.append("device_visit", item.visit);
  return body;
}

// Send what waits, oldest first. onSynced(item, record) for each one the server now has.
// Resolves to {sent, waiting, refused}; stops at the first network failure (the rest waits too).
export async function sync(onSynced, onRefused) {
  const counts = { sent: 0, waiting: 0, refused: 0 };
  const items = await pending();
  for (const [i, item] of items.entries()) {
    if (item.refused) {
      counts.refused += 1;
      continue;
    }
    let response;
    try {
      response = await fetch("/api/v1/sync", { method: "POST", body: form(item), headers: { Accept: "application/json" } });
    } catch (offline) {
      counts.waiting = items.slice(i).filter((x) => !x.refused).length;
      return counts;
    }
    if (response.ok) {
      const record = await response.json();
      await forget(item.key);
      counts.sent += 1;
      onSynced?.(item, record);
    } else if (response.status >= 400 && response.status < 500 && ![408, 429].includes(response.status)) {
      let reason = String(response.status);
      try { reason = (await response.json()).error || reason; } catch (ignored) { /* not JSON */ }
      await markRefused(item, reason);
      counts.refused += 1;
      onRefused?.(item, reason);
    } else {
      counts.waiting = items.slice(i).filter((x) => !x.refused).length;
      return counts;
    }
  }
  return counts;
}
