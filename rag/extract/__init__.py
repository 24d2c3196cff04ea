"""Stage 3, text: raw bytes -> Document (extract; PDFs through pdftext) -> Chunks (chunk). Pure: objects in,
objects out."""
