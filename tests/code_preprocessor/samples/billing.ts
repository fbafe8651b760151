// Billing: invoices, payment providers and a retry helper.
import { randomUUID } from "node:crypto";
import type { Logger } from "./logging";
import * as money from './money';
import Stripe = require("stripe");

/** Something that can charge a customer. */
export interface PaymentProvider extends Named, Disposable {
  charge(customerId: string, cents: number): Promise<Receipt>;
  readonly name: string;
}

export enum InvoiceStatus {
  Draft = "draft",
  Paid = "paid",
}

/**
 * Shared plumbing for providers.
 */
export abstract class BaseProvider implements PaymentProvider {
  abstract readonly name: string;

  constructor(protected readonly logger: Logger) {}

  abstract charge(customerId: string, cents: number): Promise<Receipt>;

  // Releases the client.
  dispose(): void {
    this.logger.info(`${this.name} disposed`);
  }
}

/** Charges cards through Stripe. */
@Injectable()
export class StripeProvider extends BaseProvider {
  readonly name = "stripe";
  private client = new Stripe(process.env.STRIPE_KEY!);

  async charge(customerId: string, cents: number): Promise<Receipt> {
    const intent = await this.client.paymentIntents.create({ amount: cents });
    return { id: intent.id, cents, at: new Date() };
  }
}

export namespace Billing.Internal {
  export function invoiceNumber(): string {
    return randomUUID().slice(0, 8);
  }

  export class Ledger {
    private entries: Receipt[] = [];

    record = (receipt: Receipt): void => {
      this.entries.push(receipt);
    };

    total(): number {
      return money.sum(this.entries.map((e) => e.cents));
    }
  }
}

/** Retries `action` up to `attempts` times. */
export async function withRetry<T>(action: () => Promise<T>, attempts = 3): Promise<T> {
  const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  for (let i = 0; ; i++) {
    try {
      return await action();
    } catch (err) {
      if (i + 1 >= attempts) throw err;
      await delay(2 ** i * 100);
    }
  }
}

interface Receipt {
  id: string;
  cents: number;
  at: Date;
}
