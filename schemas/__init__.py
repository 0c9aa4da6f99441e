"""Built-in schemas, importable as `extractkit.schemas` (this folder is mapped into the package).

Each field carries a description (it goes into the prompt) and bounds (they go
into the grammar), so decoding always ends and the model knows what each field means.
"""

from .contact import Contact
from .event import Event
from .invoice import Invoice, LineItem
from .job_posting import JobPosting, Salary
from .receipt import Receipt

__all__ = ["Contact", "Event", "Invoice", "JobPosting", "LineItem", "Receipt", "Salary"]
