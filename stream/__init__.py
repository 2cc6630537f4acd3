"""crmbonus: CRM sales activity in, bonus pay out."""
