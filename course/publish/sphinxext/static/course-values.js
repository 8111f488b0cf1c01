// A figure's note (what it is, of how many samples, where and when it was measured) is its title,
// which a mouse shows on hover. A touch screen has no hover: there, the first tap on a figure shows
// the note at the foot of the screen, and a second tap on the same figure follows its link to its
// row on the machine's page. Tapping anywhere else closes the note.
(() => {
  let touched = null; // the figure the last touch began on
  let shown = null; // the figure whose note is open

  const close = () => {
    document.querySelector(".course-note")?.remove();
    shown = null;
  };

  const open = (value) => {
    close();
    const note = document.createElement("div");
    note.className = "course-note";
    note.setAttribute("role", "status");
    const text = document.createElement("p");
    text.textContent = value.title; // text, never markup: the note comes from a result set
    const row = document.createElement("a");
    row.href = value.href;
    row.textContent = "See it on its machine's page";
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.textContent = "Close";
    dismiss.addEventListener("click", close);
    note.append(text, row, dismiss);
    document.body.append(note);
    shown = value;
  };

  document.addEventListener("pointerdown", (event) => {
    touched = event.pointerType === "touch" ? event.target.closest("a.course-value") : null;
  });

  document.addEventListener("click", (event) => {
    const value = event.target.closest("a.course-value");
    if (value && value === touched && value !== shown && value.title) {
      event.preventDefault(); // first tap: the note; a second one follows the link
      open(value);
    } else if (shown && !event.target.closest(".course-note")) {
      close();
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
})();
