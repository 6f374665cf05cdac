"""Meta: Facebook Messenger and Page comments, Instagram direct messages and comments, WhatsApp."""
