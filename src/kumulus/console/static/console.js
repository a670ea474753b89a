// Kumulus consoles: the little the server cannot do. No build step, no third-party code
// besides htmx (shipped next to this file).
"use strict";

// Every htmx request carries the CSRF token of the page (double-submit with its cookie).
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});

// Live regions poll: every `data-poll` seconds while the tab is visible, every
// `data-poll-hidden` seconds (default 30) while it is hidden.
function schedulePolls() {
  document.querySelectorAll("[data-poll]").forEach((el) => {
    if (el.dataset.pollScheduled) return;
    el.dataset.pollScheduled = "1";
    const tick = () => {
      if (!document.body.contains(el)) return;
      const visible = document.visibilityState === "visible";
      const seconds = Number(visible ? el.dataset.poll : el.dataset.pollHidden || 30);
      el._pollTimer = setTimeout(() => {
        htmx.trigger(el, "poll");
        tick();
      }, seconds * 1000);
    };
    el._pollTick = tick;
    tick();
  });
}
document.addEventListener("visibilitychange", () => {
  // Re-arm at the new pace right away instead of after a long hidden-tab wait.
  document.querySelectorAll("[data-poll]").forEach((el) => {
    clearTimeout(el._pollTimer);
    if (el._pollTick) el._pollTick();
  });
});
document.addEventListener("DOMContentLoaded", schedulePolls);
document.addEventListener("htmx:afterSettle", schedulePolls);

// Plain forms that destroy something ask first (htmx forms use hx-confirm). Forms marked
// `data-submit-once` (creating a VM) go once: their button is disabled while the request
// runs, so a double click sends one request; the form's Idempotency-Key covers a resend.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  if (event.defaultPrevented || !("submitOnce" in form.dataset)) return;
  if (form.dataset.submitted) {
    event.preventDefault();
    return;
  }
  form.dataset.submitted = "1";
  form.querySelectorAll("button[type=submit]").forEach((button) => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    if (button.dataset.busyText) {
      button.dataset.idleText = button.textContent;
      button.textContent = button.dataset.busyText;
    }
  });
});
// Back to a page kept in the browser's cache: its form may be sent again (same key).
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("form[data-submitted]").forEach((form) => {
    delete form.dataset.submitted;
    form.querySelectorAll("button[aria-busy]").forEach((button) => {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (button.dataset.idleText) button.textContent = button.dataset.idleText;
    });
  });
});

// Copy buttons: <button data-copy="#id">.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  const status = document.getElementById(button.getAttribute("aria-describedby") || "");
  if (status) status.textContent = "Copied";
  button.dataset.copied = "1";
});

// Size presets fill the custom fields; any custom edit deselects the preset.
document.addEventListener("change", (event) => {
  const preset = event.target.closest("input[name=preset]");
  if (!preset) return;
  const form = preset.form;
  if (preset.value === "custom") return;
  const [cpu, memory, disk] = preset.value.split("/");
  form.elements.cpu.value = cpu;
  form.elements.memory.value = memory;
  form.elements.disk.value = disk;
  htmx.trigger(form, "quote");
});

// Editing a size field checks the preset the fields now hold, or "Custom" (as the server
// does when it shows the form again: developer_views.preset_of).
document.addEventListener("input", (event) => {
  const input = event.target.closest("input[name=cpu], input[name=memory], input[name=disk]");
  if (!input || !input.form) return;
  const fields = input.form.elements;
  const cpu = Number(fields.cpu.value.trim());
  const held = `${fields.cpu.value.trim() === "" ? "" : cpu}/${fields.memory.value.trim().toLowerCase()}/${fields.disk.value.trim().toLowerCase()}`;
  const presets = Array.from(input.form.querySelectorAll("input[name=preset]"));
  const match = presets.find((p) => p.value === held) || presets.find((p) => p.value === "custom");
  if (match) match.checked = true;
});

// Uploading a .pub file fills the key textarea, so the same field is validated either way.
document.addEventListener("change", async (event) => {
  const input = event.target.closest("input[type=file][data-fill]");
  if (!input || !input.files.length) return;
  const target = document.querySelector(input.dataset.fill);
  if (target) target.value = (await input.files[0].text()).trim();
});

// Wallet linking through a browser extension (polkadot.js, Talisman, ...), using the
// standard injected-extension API: window.injectedWeb3[name].enable(origin) gives
// { accounts.get(), signer.signRaw({address, data, type}) }.
async function kumulusWalletExtensions() {
  // Extensions inject themselves shortly after load.
  for (let i = 0; i < 10 && !Object.keys(window.injectedWeb3 || {}).length; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Object.keys(window.injectedWeb3 || {});
}

async function kumulusConnectWallet(button) {
  const status = document.getElementById("wallet-status");
  const picker = document.getElementById("wallet-accounts");
  const names = await kumulusWalletExtensions();
  if (!names.length) {
    status.textContent =
      "No wallet extension found. Install polkadot.js or Talisman, or paste a signature below.";
    return;
  }
  picker.innerHTML = "";
  for (const name of names) {
    try {
      const ext = await window.injectedWeb3[name].enable("Kumulus");
      const accounts = await ext.accounts.get();
      for (const account of accounts) {
        const option = document.createElement("option");
        option.value = JSON.stringify({ name, address: account.address });
        option.textContent = `${account.name || account.address} (${name})`;
        picker.appendChild(option);
      }
    } catch (err) {
      status.textContent = `${name}: ${err && err.message ? err.message : err}`;
    }
  }
  if (!picker.options.length) {
    status.textContent = "The extension shared no account with Kumulus.";
    return;
  }
  document.getElementById("wallet-pick").hidden = false;
  status.textContent = `${picker.options.length} account(s) found: pick one and sign.`;
}

function toHex(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function kumulusSignWithWallet(form) {
  const status = document.getElementById("wallet-status");
  const choice = JSON.parse(document.getElementById("wallet-accounts").value);
  const message = form.dataset.message;
  try {
    const ext = await window.injectedWeb3[choice.name].enable("Kumulus");
    const { signature } = await ext.signer.signRaw({
      address: choice.address,
      data: toHex(message),
      type: "bytes",
    });
    form.elements.address.value = choice.address;
    form.elements.signature.value = signature;
    status.textContent = "Signed; linking...";
    form.requestSubmit();
  } catch (err) {
    status.textContent = `Signing was refused: ${err && err.message ? err.message : err}`;
  }
}

// Wallet buttons, wired here rather than by inline handlers (the CSP runs no inline script).
document.addEventListener("click", (event) => {
  const connect = event.target.closest("[data-wallet-connect]");
  if (connect) {
    kumulusConnectWallet(connect);
    return;
  }
  const sign = event.target.closest("[data-wallet-sign]");
  if (sign) kumulusSignWithWallet(document.querySelector(sign.dataset.walletSign));
});
