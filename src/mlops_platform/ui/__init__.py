"""The Streamlit UI. It reads CLEAN/RAW read-only and gets predictions only through the API."""
