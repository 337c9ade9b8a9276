/**
 * Browser side of the Logit Lens panels. It renders only from data the extension posts; the
 * panels themselves arrive with the extension work (issue 5).
 */
const root = document.getElementById("root");
if (root) root.textContent = "Logit Lens";
