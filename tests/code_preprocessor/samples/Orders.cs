// Order processing: repositories, services and value types.
using System;
using System.Collections.Generic;
using System.Linq;
using static System.Math;
using Json = System.Text.Json.JsonSerializer;

namespace Shop.Orders
{
    /// <summary>Something that can be persisted.</summary>
    public interface IEntity
    {
        Guid Id { get; }
        void Validate();
    }

    public interface IOrderRepository : IRepository<Order>, IDisposable
    {
        Order Find(Guid id);
    }

    /// <summary>The state an order is in.</summary>
    public enum OrderStatus { Pending, Paid, Shipped }

    public readonly struct Money : IEquatable<Money>
    {
        public decimal Amount { get; }
        public Money(decimal amount) { Amount = Round(amount, 2); }
        public bool Equals(Money other) => Amount == other.Amount;
    }

    public record OrderLine(string Sku, int Quantity, Money Price);

    /// <summary>
    /// An order placed by a customer.
    /// </summary>
    public class Order : AggregateRoot, IEntity
    {
        private readonly List<OrderLine> _lines = new();

        public Guid Id { get; } = Guid.NewGuid();
        public OrderStatus Status { get; private set; }

        public Order(IEnumerable<OrderLine> lines)
        {
            _lines.AddRange(lines);
            this.Validate();
        }

        public void Validate()
        {
            if (!_lines.Any())
                throw new InvalidOperationException("empty order");
        }

        // Total of every line, in the order's currency.
        public decimal Total()
        {
            decimal LineTotal(OrderLine line) => line.Quantity * line.Price.Amount;
            return _lines.Sum(LineTotal);
        }

        public class Builder
        {
            private readonly List<OrderLine> _pending = new();

            public Builder Add(string sku, int quantity, decimal price)
            {
                _pending.Add(new OrderLine(sku, quantity, new Money(price)));
                return this;
            }

            public Order Build() => new Order(_pending);
        }
    }

    public sealed class OrderService : ServiceBase<Order>, IOrderService
    {
        private readonly IOrderRepository _repository;

        public OrderService(IOrderRepository repository) : base("orders")
        {
            _repository = repository;
        }

        public string Export(Guid id)
        {
            var order = _repository.Find(id);
            order?.Validate();
            Console.WriteLine($"exporting {id}");
            return Json.Serialize(order);
        }
    }
}
