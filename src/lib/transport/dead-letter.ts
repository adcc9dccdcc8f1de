/**
 * The dead-letter reason of a Service Bus message, as a function triggered by a dead-letter
 * sub-queue (`<queue>/$deadletterqueue`) receives it.
 *
 * Service Bus keeps the reason and description as APPLICATION properties of the dead-lettered
 * message (`DeadLetterReason`, `DeadLetterErrorDescription`). The Functions Service Bus extension
 * binds no key of its own for them: they arrive inside `ApplicationProperties`, and the Node
 * worker (`@azure/functions` 4.x) camel-cases every key, nested ones included, so the handler sees
 * `triggerMetadata.applicationProperties.deadLetterReason`. There is no top-level
 * `triggerMetadata.deadLetterReason` in Azure; it is still read as a fallback (an older local
 * host bound it there).
 *
 * Reasons Service Bus itself writes: `MaxDeliveryCountExceeded`, `TTLExpiredException`,
 * `HeaderSizeExceeded`, `Session*`...; an application that dead-letters a message by hand writes
 * its own.
 */

type Metadata = Record<string, unknown> | undefined | null;

function stringProperty(bag: unknown, ...names: string[]): string | undefined {
  if (typeof bag !== 'object' || bag === null) return undefined;
  const record = bag as Record<string, unknown>;
  for (const name of names) {
    const v = record[name];
    if (typeof v === 'string' && v !== '') return v;
    // The worker JSON-parses string metadata: a reason that looks like a number arrives as one.
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  }
  return undefined;
}

/** The dead-letter reason carried by a dead-lettered message's trigger metadata, if any. */
export function deadLetterReasonOf(triggerMetadata: Metadata): string | undefined {
  return (
    stringProperty(triggerMetadata?.applicationProperties, 'deadLetterReason', 'DeadLetterReason') ??
    stringProperty(triggerMetadata?.userProperties, 'deadLetterReason', 'DeadLetterReason') ??
    stringProperty(triggerMetadata, 'deadLetterReason')
  );
}

/** The dead-letter error description, read the same way as the reason. */
export function deadLetterErrorDescriptionOf(triggerMetadata: Metadata): string | undefined {
  return (
    stringProperty(
      triggerMetadata?.applicationProperties,
      'deadLetterErrorDescription',
      'DeadLetterErrorDescription',
    ) ??
    stringProperty(
      triggerMetadata?.userProperties,
      'deadLetterErrorDescription',
      'DeadLetterErrorDescription',
    ) ??
    stringProperty(triggerMetadata, 'deadLetterErrorDescription')
  );
}
