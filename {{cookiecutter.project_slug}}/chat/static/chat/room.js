// Room page: one WebSocket to /ws/chat/<room>/, reopened with backoff whenever it drops.
"use strict";

const roomName = JSON.parse(document.getElementById("room-name").textContent);
const log = document.getElementById("chat-log");
const stateLabel = document.getElementById("connection-state");
const errorLabel = document.getElementById("chat-error");
const form = document.getElementById("chat-form");
const input = document.getElementById("chat-message-input");

// Same host and port as the page; wss:// when the page came over https.
const scheme = window.location.protocol === "https:" ? "wss" : "ws";
const socketUrl = `${scheme}://${window.location.host}/ws/chat/${encodeURIComponent(roomName)}/`;

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
let backoffMs = BACKOFF_FIRST_MS;
let socket = null;
let connections = 0;

function showState(state) {
  stateLabel.textContent = state;
  stateLabel.dataset.state = state;
  stateLabel.dataset.connections = String(connections);
}

function addLine(text, sentAt) {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.dateTime = sentAt;
  time.textContent = new Date(sentAt).toLocaleTimeString();
  item.append(time, " ", text);  // text nodes: a message is never parsed as HTML
  log.append(item);
  item.scrollIntoView({ block: "end" });
}

function connect() {
  showState("connecting");
  socket = new WebSocket(socketUrl);
  socket.addEventListener("open", () => {
    connections += 1;
    backoffMs = BACKOFF_FIRST_MS;
    errorLabel.textContent = "";
    showState("open");
  });
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "message") {
      addLine(frame.message, frame.sent_at);
    } else if (frame.type === "error") {
      errorLabel.textContent = frame.error;
    }
  });
  socket.addEventListener("close", () => {
    // Jitter spreads the reconnects of many clients after a server restart.
    const delay = backoffMs * (0.5 + Math.random() / 2);
    backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
    showState("reconnecting");
    window.setTimeout(connect, delay);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const message = input.value;
  if (!message.trim()) {
    return;
  }
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    errorLabel.textContent = "Not connected yet; your message was kept.";
    return;
  }
  socket.send(JSON.stringify({ message }));
  input.value = "";
  input.focus();
});

connect();
