import type { EventSubscriber, TransactionEventArgs } from '@mikro-orm/core';
import { failSpan, type Span, SpanKind, tracer } from '@assist-tee/tracing';

/**
 * A span per database transaction, from its start to its commit or rollback, child of the work
 * that opened it (an RPC, an event). No-op while tracing is off.
 */
export class TransactionSpans implements EventSubscriber {
  // Keyed by the transaction: it is the one object its start, commit and rollback all see.
  private readonly spans = new WeakMap<object, Span>();

  constructor(private readonly schema: string) {}

  afterTransactionStart(args: TransactionEventArgs): void {
    const transaction = transactionOf(args);
    if (transaction === undefined) return;
    const span = tracer().startSpan('db.transaction', {
      kind: SpanKind.CLIENT,
      attributes: {
        'db.system.name': 'postgresql',
        'db.namespace': this.schema,
        ...(transaction.savepointName ? { 'db.savepoint': transaction.savepointName } : {}),
      },
    });
    this.spans.set(transaction, span);
  }

  afterTransactionCommit(args: TransactionEventArgs): void {
    this.end(args);
  }

  afterTransactionRollback(args: TransactionEventArgs): void {
    this.end(args, new Error('rolled back'));
  }

  private end(args: TransactionEventArgs, error?: Error): void {
    const transaction = transactionOf(args);
    if (transaction === undefined) return;
    const span = this.spans.get(transaction);
    if (span === undefined) return;
    this.spans.delete(transaction);
    if (error !== undefined) failSpan(span, error);
    span.end();
  }
}

function transactionOf(args: TransactionEventArgs): { savepointName?: string } | undefined {
  return args.transaction as { savepointName?: string } | undefined;
}
