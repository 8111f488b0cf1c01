// A wide table scrolls sideways in its own box on a narrow screen. Each box that does is marked
// "course-scrolls", so that a hint right above it (course.css shows a .course-scroll-hint only
// there) says so; the mark follows the window's width and the fonts as they load.
(() => {
  const mark = () => {
    for (const box of document.querySelectorAll("article .table-wrapper")) {
      box.classList.toggle("course-scrolls", box.scrollWidth > box.clientWidth + 1);
    }
  };
  mark();
  addEventListener("load", mark);
  addEventListener("resize", mark);
})();
