// Question form: the asker points at a region of the guide example's image by clicking its
// four corners; the points go, as JSON in image pixels, into the hidden "region" field.
const picker = document.getElementById("picker");
if (picker) {
  const img = document.getElementById("picker-image");
  const field = document.getElementById("id_region"), poly = document.getElementById("region-poly");
  const count = document.getElementById("region-count");
  const W = +picker.dataset.width, H = +picker.dataset.height;
  let points = [];
  const draw = () => {
    poly.setAttribute("points", points.map((p) => p.join(",")).join(" "));
    field.value = points.length === 4 ? JSON.stringify(points) : "";
    count.textContent = `${points.length} of 4 points`;
  };
  img.addEventListener("click", (ev) => {
    if (points.length === 4) return;
    const r = img.getBoundingClientRect();
    points.push([Math.round((ev.clientX - r.left) * W / r.width), Math.round((ev.clientY - r.top) * H / r.height)]);
    draw();
  });
  document.getElementById("region-reset").addEventListener("click", () => { points = []; draw(); });
  draw();
}
