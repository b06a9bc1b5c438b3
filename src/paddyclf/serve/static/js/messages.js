// The page's language for the script: the server puts the translations of the scripts' _() messages
// in <script id="messages"> and the words of a diagnosis (verdicts, class names, disease cards) in
// <script id="wording"> (one gettext catalogue for the pages and the scripts: `make messages`).
function embedded(id) {
  return JSON.parse(document.getElementById(id)?.textContent || "{}");
}

export const MESSAGES = embedded("messages");
export const WORDING = embedded("wording");
export const LANGUAGE = document.documentElement.lang || "en";

export function fill(text, values = {}) {
  return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

export function _(message, values = {}) {
  return fill(MESSAGES[message] || message, values);
}
