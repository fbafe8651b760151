<?php

declare(strict_types=1);

namespace App\Billing;

use App\Contracts\Payable;
use App\Support\{Money, Currency};
use Psr\Log\LoggerInterface as Logger;

require_once __DIR__ . '/helpers.php';

/**
 * Something that can be rendered to text.
 */
interface Renderable extends \Stringable, \JsonSerializable
{
    public function render(): string;
}

trait HasTotals
{
    // Sum of every line.
    public function total(): Money
    {
        return array_reduce($this->lines, fn ($sum, $line) => $sum->add($line->amount()), Money::zero());
    }
}

enum Status: string implements \JsonSerializable
{
    case Draft = 'draft';
    case Sent = 'sent';

    public function label(): string
    {
        return ucfirst($this->value);
    }
}

/** An invoice sent to a customer. */
final class Invoice extends Document implements Payable, Renderable
{
    use HasTotals;

    private array $lines = [];

    public function __construct(private Logger $logger, private Status $status = Status::Draft)
    {
        parent::__construct();
    }

    public static function draft(Logger $logger): self
    {
        return new self($logger);
    }

    public function addLine(string $sku, Money $amount): static
    {
        $this->lines[] = new Line($sku, $amount);
        $this->logger?->debug("line added");
        return $this;
    }

    public function render(): string
    {
        $format = function (Line $line): string {
            return sprintf('%s %s', $line->sku, $line->amount());
        };
        return implode("\n", array_map($format, $this->lines));
    }

    public function pay(): void
    {
        $this->status = Status::Sent;
        self::notify($this);
    }

    private static function notify(self $invoice): void
    {
        event(new InvoicePaid($invoice));
    }
}

function format_invoice(Invoice $invoice): string
{
    function indent(string $text): string
    {
        return '  ' . $text;
    }
    return indent($invoice->render());
}
