"""mesh.teach"""
