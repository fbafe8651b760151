# frozen_string_literal: true

require "json"
require 'bigdecimal'
require_relative "support/money"

# Accounting primitives.
module Ledger
  VERSION = "1.2.0"

  # Something that can be serialised.
  module Serializable
    def to_json(*args)
      to_h.to_json(*args)
    end
  end

  class Error < StandardError; end

  # A single debit or credit.
  class Entry
    include Comparable
    include Serializable

    attr_reader :amount, :memo

    def initialize(amount, memo = nil)
      @amount = BigDecimal(amount.to_s)
      @memo = memo
    end

    def <=>(other)
      amount <=> other.amount
    end

    def to_h
      { amount: amount.to_s("F"), memo: memo }
    end

    # Builds an entry from a hash.
    def self.from_h(hash)
      new(hash.fetch("amount"), hash["memo"])
    end
  end

  # An account holds entries and knows its balance.
  class Account < Base::Record
    include Serializable

    class << self
      def open(name)
        account = new(name)
        registry.store(name, account)
      end

      def registry
        @registry ||= {}
      end
    end

    def initialize(name)
      super()
      @name = name
      @entries = []
    end

    def post(amount, memo: nil)
      raise Error, "zero amount" if amount.zero?

      entry = Entry.new(amount, memo)
      @entries << entry
      notify(entry)
      self
    end

    def balance
      @entries.sum(&:amount)
    end

    private

    def notify(entry)
      format = ->(e) { "#{@name}: #{e.amount}" }
      Ledger.logger.info(format.call(entry))
    end
  end

  def self.logger
    @logger ||= Logger.new($stdout)
  end
end

def main
  account = Ledger::Account.open("cash")
  account.post(10).post(-3)
  puts account.balance
end

main if $PROGRAM_NAME == __FILE__
