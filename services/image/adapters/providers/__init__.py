"""Image providers: something that turns a prompt into image bytes.

`offline` draws a deterministic placeholder without any network; `openai`
calls OpenAI's Images API. main.py picks one (RECIPEIMAGE_PROVIDER). Both
answer a domain.images.GeneratedImage and fit app.ports.Provider.

A provider raises services.common.errors domain errors for the failures a
caller can act on (ContentRefused, QuotaExceeded, DeadlineExceeded,
Unavailable); the use case releases the reservation and passes them on.
"""
