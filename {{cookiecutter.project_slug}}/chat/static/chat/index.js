// Room picker: go to /chat/<room>/ for the name typed in.
"use strict";

document.getElementById("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("room-name-input");
  if (input.checkValidity()) {
    window.location.pathname = "/chat/" + encodeURIComponent(input.value) + "/";
  }
});
