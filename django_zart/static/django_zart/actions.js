// Points at a JSON syntax error in an action form before it is sent; the server checks again.
"use strict";
document.addEventListener("submit", function (event) {
  const form = event.target;
  if (!form.classList || !form.classList.contains("zart-action")) {
    return;
  }
  let first = null;
  form.querySelectorAll("textarea[data-zart-json]").forEach(function (box) {
    let note = box.parentNode.querySelector(".zart-json-error");
    if (note) {
      note.remove();
    }
    const text = box.value.trim();
    if (!text) {
      return;
    }
    try {
      JSON.parse(text);
    } catch (error) {
      note = document.createElement("p");
      note.className = "zart-json-error";
      note.textContent = "Not valid JSON: " + error.message;
      box.insertAdjacentElement("afterend", note);
      first = first || box;
    }
  });
  if (first) {
    event.preventDefault();
    first.focus();
  }
});
