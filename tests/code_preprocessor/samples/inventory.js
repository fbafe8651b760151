// Inventory service: keeps stock levels and notifies listeners.
import { EventEmitter } from "events";
import path from 'node:path';
export { formatSku } from "./format.js";

const fs = require("fs");

const DEFAULT_LIMIT = 100;

/**
 * Base class for anything that stores items.
 */
class Store {
  constructor(name) {
    this.name = name;
    this.items = new Map();
  }

  size() {
    return this.items.size;
  }
}

/** Tracks stock for every SKU and emits "low" events. */
export class Inventory extends Store {
  #emitter = new EventEmitter();

  // Adds `count` units of `sku`.
  add(sku, count = 1) {
    const current = this.items.get(sku) ?? 0;
    this.items.set(sku, current + count);
    this.#notify(sku);
  }

  remove(sku, count = 1) {
    function clamp(value) {
      return Math.max(0, value);
    }
    this.items.set(sku, clamp(this.items.get(sku) - count));
    this.#notify(sku);
  }

  #notify(sku) {
    if (this.items.get(sku) < DEFAULT_LIMIT) {
      this.#emitter.emit("low", sku);
    }
  }

  onLow = (listener) => {
    this.#emitter.on("low", listener);
  };

  static fromFile(file) {
    const inventory = new Inventory(path.basename(file));
    const data = JSON.parse(fs.readFileSync(file, "utf8"));
    for (const [sku, count] of Object.entries(data)) {
      inventory.add(sku, count);
    }
    return inventory;
  }
}

// Sums the stock of several inventories.
export const totalStock = (...inventories) =>
  inventories.reduce((sum, inv) => sum + inv.size(), 0);

export default function createInventory(name) {
  const Audited = class extends Inventory {
    add(sku, count) {
      console.log(`add ${sku}`);
      super.add(sku, count);
    }
  };
  return new Audited(name);
}

async function loadPlugins(names) {
  const modules = await Promise.all(names.map((n) => import(`./plugins/${n}.js`)));
  const { register } = await import("./registry.js");
  modules.forEach((m) => register(m));
}

loadPlugins(["audit"]).catch(console.error);
